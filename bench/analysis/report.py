"""python -m bench.report: comparison and release tables, plots and a recommendation.

    python -m bench.report runs/multirun/2026-11-24/*            # engines side by side
    python -m bench.report --baseline results/v1/* --candidate runs/multirun/...   # release vs release
    python -m bench.report runs/... --max-wer 0.08 --min-rtfx 20 --max-memory-gib 40
    python -m bench.report --reference results/reference/h100    # a bench.reference folder's tables
    python -m bench.report --profiles runs/... --out results/profiles/h100   # profile=true runs

Rows from different hardware or datasets are not put in one comparison unless
--allow-mixed is given. Outputs go to --out (default: the current folder).
"""

from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from bench.analysis.runs import Run, load_runs, rtf_ratio_samples
from bench.analysis.table import markdown, rtfx_ci_cell
from bench.errors import BenchError
from bench.stats import RESAMPLES


def comparison_frame(runs: list[Run]) -> pd.DataFrame:
    rows = []
    for run in runs:
        s = run.summary
        wer = s.get("wer_details") or {}
        rows.append(
            {
                "engine": s["engine"],
                "patches": ",".join(s["patches"]) or "-",
                "weights": s["weights"],
                "model": f"{s['model']} ({s['scale']})",
                "dataset": s["dataset"]["name"],
                "batch": s["batch_size"],
                "n": s["n_utterances"] - s["n_failed"],
                "WER": s["wer"],
                "S/D/I": f"{wer['substitutions']}/{wer['deletions']}/{wer['insertions']}" if wer else "-",
                "RTFx": s["rtfx"],
                "RTFx 95% CI": rtfx_ci_cell(s),
                "p50 s": s["latency_p50"],
                "p90 s": s["latency_p90"],
                "p99 s": s["latency_p99"],
                "tok/s": s["decode_tokens_per_s"],
                "peak GiB": s["peak_gpu_memory_bytes"] / 2**30 if s["peak_gpu_memory_bytes"] else None,
                "cold start s": s["cold_start_seconds"],
                "hardware": run.hardware,
            }
        )
    return pd.DataFrame(rows).sort_values(["dataset", "batch", "engine"], kind="stable").reset_index(drop=True)


def check_comparable(runs: list[Run], allow_mixed: bool) -> None:
    hardware = sorted({r.hardware for r in runs})
    datasets = {r.dataset_key for r in runs}
    problems = []
    if len(hardware) > 1:
        problems.append(f"hardware differs ({'; '.join(hardware)})")
    if len(datasets) > 1:
        names = sorted({f"{r.summary['dataset']['name']} {r.dataset_key}" for r in runs})
        problems.append(f"datasets differ ({'; '.join(names)})")
    if problems and not allow_mixed:
        raise BenchError(
            "these runs are not comparable: " + " and ".join(problems) + "; speed is comparable only on the same "
            "hardware and data. Report them separately, or pass --allow-mixed to put them in one table anyway"
        )


# -- release vs release -------------------------------------------------------------------
def _rtfx_mark(base: Run, cand: Run, rng) -> tuple[float, str]:
    """RTFx change and whether it is beyond noise: bootstrap CI of the RTF ratio."""
    ratio = rtf_ratio_samples(cand.batches, base.batches, RESAMPLES, rng)
    low, high = np.percentile(ratio, [2.5, 97.5])
    delta = base.summary["rtf"] / cand.summary["rtf"] - 1  # RTFx change
    if low > 1:
        return delta, "worse"
    if high < 1:
        return delta, "better"
    return delta, "noise"


def _wer_mark(base: Run, cand: Run, rng) -> tuple[float | None, str]:
    """WER change with a paired bootstrap over the utterances both runs scored."""
    if base.summary["wer"] is None or cand.summary["wer"] is None:
        return None, "n/a"
    b, c = base.utterances.set_index("id"), cand.utterances.set_index("id")
    common = b.index.intersection(c.index)
    errors = lambda f: (f.substitutions + f.deletions + f.insertions).loc[common].to_numpy(float)  # noqa: E731
    eb, ec, words = errors(b), errors(c), b.reference_words.loc[common].to_numpy(float)
    picks = rng.integers(0, len(common), size=(RESAMPLES, len(common)))
    diff = (ec[picks].sum(1) - eb[picks].sum(1)) / np.maximum(words[picks].sum(1), 1)
    low, high = np.percentile(diff, [2.5, 97.5])
    delta = cand.summary["wer"] - base.summary["wer"]
    return delta, "worse" if low > 0 else "better" if high < 0 else "noise"


def _relative_mark(base, cand, tolerance=0.05, lower_is_better=True) -> tuple[float | None, str]:
    if base is None or cand is None or base == 0:
        return None, "n/a"
    delta = cand / base - 1
    if abs(delta) <= tolerance:
        return delta, "noise"
    return delta, "better" if (delta < 0) == lower_is_better else "worse"


def release_frame(baseline: list[Run], candidate: list[Run], seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    by_key = {key: r for r in baseline for key in reversed(r.keys)}  # its own key wins over the legacy one
    rows = []
    for cand in candidate:
        base = next((by_key[key] for key in cand.keys if key in by_key), None)
        if base is None:
            continue
        rtfx_delta, rtfx_mark = _rtfx_mark(base, cand, rng)
        wer_delta, wer_mark = _wer_mark(base, cand, rng)
        p50_delta, p50_mark = _relative_mark(base.summary["latency_p50"], cand.summary["latency_p50"])
        mem_delta, mem_mark = _relative_mark(
            base.summary["peak_gpu_memory_bytes"], cand.summary["peak_gpu_memory_bytes"]
        )
        rows.append(
            {
                "engine": cand.summary["engine"],
                "dataset": cand.summary["dataset"]["name"],
                "batch": cand.summary["batch_size"],
                "RTFx base": base.summary["rtfx"],
                "RTFx cand": cand.summary["rtfx"],
                "RTFx Δ%": 100 * rtfx_delta,
                "RTFx": rtfx_mark,
                "WER base": base.summary["wer"],
                "WER cand": cand.summary["wer"],
                "WER Δ": wer_delta,
                "WER": wer_mark,
                "p50 Δ%": None if p50_delta is None else 100 * p50_delta,
                "p50": p50_mark,
                "memory Δ%": None if mem_delta is None else 100 * mem_delta,
                "memory": mem_mark,
            }
        )
    if not rows:
        raise BenchError("no candidate run matches a baseline run (same engine, patches, model, dtype, batch, data)")
    return pd.DataFrame(rows)


# -- recommendation -----------------------------------------------------------------------
def recommend(frame: pd.DataFrame, max_wer=None, min_rtfx=None, max_memory_gib=None, max_latency_s=None) -> str:
    """Pick the engine for production under constraints, and say why in a few lines."""
    wer_known = frame["WER"].notna().all()
    ok = frame.copy()
    reasons = []
    if max_wer is not None and wer_known:
        ok = ok[ok["WER"] <= max_wer]
        reasons.append(f"WER <= {max_wer:g}")
    if min_rtfx is not None:
        ok = ok[ok["RTFx"] >= min_rtfx]
        reasons.append(f"RTFx >= {min_rtfx:g}")
    if max_memory_gib is not None:
        ok = ok[ok["peak GiB"].isna() | (ok["peak GiB"] <= max_memory_gib)]
        reasons.append(f"peak memory <= {max_memory_gib:g} GiB")
    if max_latency_s is not None:
        ok = ok[ok["p90 s"] <= max_latency_s]
        reasons.append(f"p90 latency <= {max_latency_s:g} s")
    limits = ", ".join(reasons) or "no constraints"
    if ok.empty:
        return f"No engine meets {limits}; relax a constraint or measure another configuration.\n"
    if wer_known:
        best = ok.sort_values(["WER", "RTFx"], ascending=[True, False]).iloc[0]
        fastest = ok.sort_values("RTFx", ascending=False).iloc[0]
        if fastest["engine"] != best["engine"] and fastest["WER"] <= best["WER"] * 1.02:
            best = fastest  # within 2% relative WER, speed decides
        why = f"WER {best['WER']:.2%} and RTFx {best['RTFx']:.1f}"
    else:
        best = ok.sort_values("RTFx", ascending=False).iloc[0]
        why = f"RTFx {best['RTFx']:.1f} {best['RTFx 95% CI']}"
    text = (
        f"Recommended: {best['engine']} (batch {best['batch']}, {best['model']}) with {why}, "
        f"the best of {len(ok)} of {len(frame)} configurations that meet {limits}.\n"
    )
    if not wer_known:
        text += (
            "WER is unknown (runs with random weights), so this recommends on speed alone; "
            "measure with pretrained weights before choosing for accuracy.\n"
        )
    return text


# -- plots --------------------------------------------------------------------------------
def pareto_front(frame: pd.DataFrame) -> pd.DataFrame:
    """Configurations no other beats on both WER (lower) and RTFx (higher)."""
    keep = []
    for i, row in frame.iterrows():
        dominated = (
            (frame["WER"] <= row["WER"])
            & (frame["RTFx"] >= row["RTFx"])
            & ((frame["WER"] < row["WER"]) | (frame["RTFx"] > row["RTFx"]))
        ).any()
        if not dominated:
            keep.append(i)
    return frame.loc[keep].sort_values("RTFx")


@contextmanager
def _figure(path: Path):
    """An axes to draw on; saved to `path` (PNG, with a legend) when the block ends."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a CI runner or a GPU host
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    try:
        yield ax
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)


def plot_wer_vs_rtfx(frame: pd.DataFrame, path: Path) -> bool:
    data = frame.dropna(subset=["WER", "RTFx"])
    if data.empty:
        return False
    with _figure(path) as ax:
        for engine, group in data.groupby("engine"):
            ax.scatter(group["RTFx"], 100 * group["WER"], label=engine)
        front = pareto_front(data)
        ax.plot(front["RTFx"], 100 * front["WER"], "k--", linewidth=1, label="Pareto front")
        ax.set_xlabel("RTFx (higher is faster)")
        ax.set_ylabel("WER % (lower is better)")
    return True


def plot_rtfx_vs_batch(frame: pd.DataFrame, path: Path) -> bool:
    if frame["batch"].nunique() < 2:
        return False
    with _figure(path) as ax:
        for engine, group in frame.groupby("engine"):
            group = group.sort_values("batch")
            ax.plot(group["batch"], group["RTFx"], marker="o", label=engine)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_ylabel("RTFx")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", help="run folders, folders holding them, or globs")
    parser.add_argument("--baseline", nargs="+", help="release comparison: the baseline runs")
    parser.add_argument("--candidate", nargs="+", help="release comparison: the candidate runs")
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--allow-mixed", action="store_true", help="compare across hardware or datasets anyway")
    parser.add_argument("--max-wer", type=float)
    parser.add_argument("--min-rtfx", type=float)
    parser.add_argument("--max-memory-gib", type=float)
    parser.add_argument("--max-latency-s", type=float, help="budget for p90 latency per utterance")
    parser.add_argument(
        "--reference", type=Path, help="a bench.reference folder: write its README.md and tables from its runs"
    )
    parser.add_argument("--profiles", nargs="+", help="profiled runs: write profiles.md and phase tables to --out")
    args = parser.parse_args(argv)
    try:
        if args.reference:
            from bench.lab.reference import write_folder

            print(write_folder(args.reference))
            return 0
        args.out.mkdir(parents=True, exist_ok=True)
        if args.profiles:
            from bench.analysis.profiles import finding

            text, tables = finding(load_runs(args.profiles))
            (args.out / "profiles.md").write_text(text)
            for name, table in tables.items():
                table.to_csv(args.out / f"{name}.csv", index=False)
            print(text)
            return 0
        if args.baseline or args.candidate:
            if not (args.baseline and args.candidate):
                raise BenchError("a release comparison needs both --baseline and --candidate")
            baseline, candidate = load_runs(args.baseline), load_runs(args.candidate)
            check_comparable(baseline + candidate, args.allow_mixed)
            table = release_frame(baseline, candidate)
            text = "# Release comparison\n\n" + markdown(table)
            (args.out / "release.md").write_text(text)
            table.to_csv(args.out / "release.csv", index=False)
            print(text)
            return 0
        runs = load_runs(args.runs)
        check_comparable(runs, args.allow_mixed)
        table = comparison_frame(runs)
        advice = recommend(table, args.max_wer, args.min_rtfx, args.max_memory_gib, args.max_latency_s)
        text = f"# Engine comparison\n\nHardware: {'; '.join(sorted(table.hardware.unique()))}\n\n"
        text += markdown(table.drop(columns="hardware")) + "\n" + advice
        (args.out / "comparison.md").write_text(text)
        table.to_csv(args.out / "comparison.csv", index=False)
        plots = [
            name
            for name, made in (
                ("wer_vs_rtfx.png", plot_wer_vs_rtfx(table, args.out / "wer_vs_rtfx.png")),
                ("rtfx_vs_batch.png", plot_rtfx_vs_batch(table, args.out / "rtfx_vs_batch.png")),
            )
            if made
        ]
        print(text)
        print(f"written to {args.out}: comparison.md, comparison.csv" + "".join(f", {p}" for p in plots))
        return 0
    except BenchError as err:
        print(f"bench.report: error: {err}", file=sys.stderr)
        return 2
