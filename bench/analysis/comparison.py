"""Engines side by side: the comparison table, whether runs are comparable, and the
recommendation under constraints."""

from __future__ import annotations

import pandas as pd

from bench.analysis.runs import Run
from bench.errors import BenchError
from bench.pipeline.record import energy_reasons, table_row

COMPARISON_COLUMNS = [
    "engine", "patches", "weights", "model", "dataset", "batch", "n", "WER", "S/D/I", "RTFx", "RTFx 95% CI",
    "p50 s", "p90 s", "p99 s", "TTFT p50 s", "tok/s", "peak GiB", "cold start s", "J/audio h", "cost/1k audio h",
    "cost/1k audio h 95% CI", "hardware",
]  # fmt: skip
COST_COLUMNS = ["cost/1k audio h", "cost/1k audio h 95% CI"]


def comparison_frame(runs: list[Run], hourly_price: float | None = None) -> pd.DataFrame:
    """One row per run. Cost is priced at hourly_price, else at each run's run.gpu_hourly_price;
    its columns are left out when no run has a price."""
    frame = pd.DataFrame([table_row(run.summary, hourly_price) for run in runs], columns=COMPARISON_COLUMNS)
    if frame["cost/1k audio h"].isna().all():
        frame = frame.drop(columns=COST_COLUMNS)
    if frame["TTFT p50 s"].isna().all():  # time to first text: streamed load runs only
        frame = frame.drop(columns="TTFT p50 s")
    return frame.sort_values(["dataset", "batch", "engine"], kind="stable").reset_index(drop=True)


def energy_notes(runs: list[Run]) -> str:
    """Why a run has no energy figure, once per reason (a CPU run: no board counter)."""
    return "".join(f"Energy (J/audio h) {note}.\n" for note in energy_reasons([r.summary for r in runs]))


def check_comparable(runs: list[Run], allow_mixed: bool) -> None:
    hardware = sorted({r.hardware for r in runs})
    datasets = {r.dataset_key for r in runs}
    problems = []
    if len(hardware) > 1:
        problems.append(f"hardware differs ({'; '.join(hardware)})")
    if len(datasets) > 1:
        names = sorted({f"{r.summary.dataset.name} {r.dataset_key}" for r in runs})
        problems.append(f"datasets differ ({'; '.join(names)})")
    if problems and not allow_mixed:
        raise BenchError(
            "these runs are not comparable: " + " and ".join(problems) + "; speed is comparable only on the same "
            "hardware and data. Report them separately, or pass --allow-mixed to put them in one table anyway"
        )


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
    limits = " and ".join(reasons)
    if ok.empty:
        return f"No configuration has {limits}; relax a constraint or measure another configuration.\n"
    # Each model at its best (its engines run the same weights, so speed decides among them unless
    # one is clearly less accurate), then the models against each other the same way: a model is
    # never judged on a slow engine while a faster one of it meets the constraints.
    at_best = pd.DataFrame([_best(group, wer_known) for _, group in ok.groupby("model", sort=True)])
    best = _best(at_best, wer_known)
    figures = (
        f"WER {best['WER']:.2%} at RTFx {best['RTFx']:.1f}"
        + (f" {best['RTFx 95% CI']}" if best["RTFx 95% CI"] != "-" else "")
        if wer_known
        else f"RTFx {best['RTFx']:.1f}" + (f", 95% CI {best['RTFx 95% CI']}" if best["RTFx 95% CI"] != "-" else "")
    )
    among = (
        f"the {len(ok)} of {len(frame)} measured configurations with {limits}"
        if reasons
        else f"all {len(frame)} measured configurations (no constraints were given)"
    )
    rule = "the fastest of those within 2% of the lowest WER" if wer_known else "the fastest"
    text = (
        f"Recommended: {best['engine']} at batch {best['batch']} on {best['model']}, with {figures}. "
        f"It is {rule} among {among}.\n"
    )
    if len(at_best) > 1:
        text += (
            "Each model at its best: "
            + "; ".join(
                f"{row['model']}: {row['engine']} (batch {row['batch']}, RTFx {row['RTFx']:.1f}"
                + (f", WER {row['WER']:.2%})" if wer_known else ")")
                for _, row in at_best.sort_values("RTFx", ascending=False).iterrows()
            )
            + ".\n"
        )
    if not wer_known:
        text += (
            "WER is unknown (runs with random weights), so this recommends on speed alone; "
            "measure with pretrained weights before choosing for accuracy.\n"
        )
    return text


def _best(configurations: pd.DataFrame, wer_known: bool) -> pd.Series:
    """The fastest configuration whose WER is within 2% (relative) of the lowest; the fastest
    when WER is unknown."""
    fastest_first = configurations.sort_values("RTFx", ascending=False, kind="stable")
    if not wer_known:
        return fastest_first.iloc[0]
    lowest = configurations["WER"].min()
    return fastest_first[fastest_first["WER"] <= lowest * 1.02].iloc[0]


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
