"""python -m bench.reference: the four engines side by side on one GPU, as a results folder.

    python -m bench.reference --out results/reference/h100 --budget-minutes 8   # measure (resumable)
    python -m bench.report --reference results/reference/h100                    # the tables, again

With random full-size weights (speed depends on shapes, not values), every engine runs
on each dataset at each batch size with repeats; on the synthetic 30 s clips also the
voxtral_patched ablation (bench.speed's points), and voxtral_stock and voxtral_patched
are profiled at batch 1. Points are measured by bench.lab.grid into --out/runs/: the same
command again measures only what is missing, so the grid can be spread over several
calls of a GPU host. When every point is there it writes, from the run folders alone
(`python -m bench.report --reference DIR` does the same again and gives the same files):
README.md (hardware, command, tables, ratios with 95% CIs, profile findings), one
comparison CSV and RTFx-vs-batch plot per dataset, ratios.csv, speed/ablation tables
and profiles.md.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from bench.analysis.table import markdown
from bench.lab.grid import (
    DEVICE_FILE,
    Point,
    Settings,
    add_arguments,
    is_done,
    measure,
    record_command,
    recorded_commands,
)
from bench.lab.speed import INCOMPLETE, measured_speed_points, profiled, speed_points
from bench.stats import RESAMPLES

ENGINES = ("voxtral_stock", "voxtral_compile", "voxtral_patched", "whisper_large_v3")
DATASETS = ("synthetic", "synthetic_librispeech_like", "sample")  # measured in this order
# What a person concluded from the tables, put at the top of the README when the folder has
# one; every figure it quotes must appear in the tables bench writes (tests check that).
FINDINGS_FILE = "findings.md"


def reference_points(engines, datasets, batch_sizes, ablation_sizes) -> list[Point]:
    points = []
    for dataset in datasets:
        points += [Point(dataset, e, b, profile=profiled(e, dataset, b)) for b in batch_sizes for e in engines]
        if dataset == "synthetic" and "voxtral_patched" in engines:
            points += [p for p in speed_points((), (), ablation_sizes) if p not in points]
    return points


# -- tables from the run folders ------------------------------------------------------------
def ratio_frame(runs, baseline_engine: str = "voxtral_patched") -> pd.DataFrame:
    """How many times faster baseline_engine is than each other engine, per batch size, with
    a 95% bootstrap CI: both runs' timed batches resampled independently (seeded: the same
    runs give the same figures)."""
    from bench.analysis.runs import rtf_ratio_samples

    by = {(r.summary.engine, r.summary.batch_size): r for r in runs}
    rows = []
    for (engine, batch), run in sorted(by.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        ours = by.get((baseline_engine, batch))
        if engine == baseline_engine or ours is None:
            continue
        rng = np.random.default_rng(0)
        samples = rtf_ratio_samples(run.batches, ours.batches, RESAMPLES, rng)
        low, high = np.percentile(samples, [2.5, 97.5])
        rows.append(
            {
                "batch": batch,
                "vs": engine,
                "speed-up": run.summary.rtf / ours.summary.rtf,
                "low": float(low),
                "high": float(high),
            }
        )
    return pd.DataFrame(rows, columns=["batch", "vs", "speed-up", "low", "high"])


def _ratio_markdown(ratios: pd.DataFrame, baseline_engine: str) -> str:
    if ratios.empty:
        return ""
    cells = ratios.assign(cell=[f"{r['speed-up']:.2f}x [{r.low:.2f}, {r.high:.2f}]" for _, r in ratios.iterrows()])
    wide = cells.pivot(index="batch", columns="vs", values="cell").reset_index()
    wide.columns = ["batch", *(f"{baseline_engine} vs {c}" for c in wide.columns[1:])]
    return markdown(wide.fillna("-"))


def _fastest_lines(frame: pd.DataFrame) -> list[str]:
    lines = []
    for batch, group in frame.groupby("batch"):
        ranked = group.sort_values("RTFx", ascending=False)
        best, second = ranked.iloc[0], ranked.iloc[1] if len(ranked) > 1 else None
        line = f"- batch {batch}: fastest is {best['engine']} at RTFx {best['RTFx']:.1f} {best['RTFx 95% CI']}"
        if second is not None:
            line += f", then {second['engine']} at {second['RTFx']:.1f} {second['RTFx 95% CI']}"
        lines.append(line + ".")
    return lines


def planned_points(commands: list[str]) -> list[Point]:
    """Every point the folder's bench.reference and bench.speed commands asked for, in order."""
    from bench.lab import speed

    plan: list[Point] = []
    for command in commands:
        words = shlex.split(command)
        if words[:3] == ["python", "-m", "bench.reference"]:
            args = parse(words[3:])
            plan += reference_points(args.engines, args.datasets, args.batch_sizes, args.ablation_batch_sizes)
        elif words[:3] == ["python", "-m", "bench.speed"]:
            plan += speed.planned_points(words[3:])
    return list(dict.fromkeys(plan))


def _missing_lines(out: Path, commands: list[str]) -> list[str]:
    """The planned points with no finished run, and why when a run failed (its error.txt)."""
    plan = planned_points(commands)
    missing = [p for p in plan if not is_done(p, out)]
    if not missing:
        return []
    lines = [
        f"Not measured (yet): {len(missing)} of the {len(plan)} planned runs; the tables below leave them out.",
        "",
    ]
    for p in missing:
        error = p.folder(out) / "error.txt"
        why = error.read_text().strip().splitlines()[-1] if error.exists() else "not run yet"
        lines.append(f"- {p.dataset}, {p.label}, batch {p.batch_size}: {why}")
    return [*lines, ""]


COLUMNS = ["engine", "batch", "n", "RTFx", "RTFx 95% CI", "p50 s", "p90 s", "tok/s", "peak GiB", "cold start s"]


def _intro_lines(out: Path, runs, summary: dict) -> list[str]:
    hardware = sorted({r.hardware for r in runs})
    lines = [
        f"# Reference results: {'; '.join(hardware)}",
        "",
        f"Random {summary.scale}-size weights in {summary.dtype} (speed depends on shapes, not values; "
        "WER is not applicable: length-matched decoding), "
        f"per run {summary.warmup_batches} warm-up batch(es), then every batch timed {summary.repeats} time(s). "
        "RTFx = audio seconds / processing seconds (the median of the timed passes), with a 95% bootstrap "
        "interval (batches resampled within each pass).",
        "",
    ]
    if (out / FINDINGS_FILE).exists():
        lines += ["## Findings", "", (out / FINDINGS_FILE).read_text().strip(), ""]
    commands = recorded_commands(out, comments=True)
    if commands:
        lines += ["## How it was measured", "", "Every command that measured into this folder, in order:", ""]
        lines += ["```bash", *commands, "```", ""]
        lines += _missing_lines(out, recorded_commands(out))
    lines += [
        "Tables written by (they give the same files again from the committed runs):",
        "",
        "```bash",
        f"python -m bench.report --reference {out}",
        f"python -m bench.speed --tables-only --out {out}   # speed.md, ablation.md, ablation_phases.md only",
        f"python -m bench.report --profiles {out}/runs --out {out.parent.parent / 'profiles' / out.name}",
        "```",
        "",
    ]
    return lines


def write_folder(out: Path) -> str:
    """README.md and the tables beside it, from the folder alone; returns the README text."""
    import json

    from bench.analysis.comparison import comparison_frame
    from bench.analysis.plots import plot_rtfx_vs_batch
    from bench.analysis.profiles import finding
    from bench.analysis.runs import load_runs
    from bench.lab import evidence
    from bench.lab.speed import write_tables

    runs = load_runs([str(out / "runs")])
    grid = [r for r in runs if "_without_" not in r.path.name]  # the ablation runs are in the speed tables
    lines = _intro_lines(out, runs, grid[0].summary)
    all_ratios = []
    names = {r.summary.dataset.name for r in grid}
    present = [d for d in DATASETS if d in names] + sorted(names - set(DATASETS))
    for dataset in present:
        runs_here = [r for r in grid if r.summary.dataset.name == dataset]
        frame = comparison_frame(runs_here)
        frame.to_csv(out / f"comparison_{dataset}.csv", index=False)
        plot = f"rtfx_vs_batch_{dataset}.png"
        made = plot_rtfx_vs_batch(frame, out / plot)
        ratios = ratio_frame(runs_here)
        all_ratios.append(ratios.assign(dataset=dataset))
        clips = ", ".join(f"{n} at batch {b}" for b, n in frame.groupby("batch")["n"].max().items())
        lines += [f"## {dataset}", "", f"Clips per run: {clips}.", "", markdown(frame[COLUMNS])]
        lines += _fastest_lines(frame) + [""]
        lines += ["Milliseconds per timed batch in each phase (mean over every pass):", ""]
        lines += [markdown(evidence.phase_frame(runs_here))]
        if not ratios.empty:
            lines += ["How many times faster voxtral_patched is (RTFx ratio, 95% CI):", ""]
            lines += [_ratio_markdown(ratios, "voxtral_patched")]
        if made:
            lines += [f"![RTFx vs batch size, {dataset}]({plot})", ""]
    pd.concat(all_ratios).to_csv(out / "ratios.csv", index=False)

    speed = measured_speed_points(out)
    if (out / DEVICE_FILE).exists() and any(p.without for p in speed):
        tables = write_tables(out, speed)
        lines += ["## Decode bandwidth and the patch ablation (synthetic 30 s clips)", ""]
        lines += [tables.replace("# Voxtral speed", "### Speed").replace("# voxtral_patched ablation", "### Ablation")]
        copy_bw = json.loads((out / DEVICE_FILE).read_text())["copy_bandwidth_bytes_per_s"]
        lines += evidence.ceiling_lines(out, pd.read_csv(out / "speed.csv"), copy_bw)
    lines += evidence.repeat_runs_lines(out)
    lines += evidence.agreement_lines(out)
    profiles, _ = finding(runs)
    (out / "profiles.md").write_text(profiles)
    body = profiles.split("\n", 1)[1].strip().replace("\n## ", "\n### ")  # one level down in the README
    lines += ["## Profiles", "", body, ""]
    text = "\n".join(lines).rstrip() + "\n"
    (out / "README.md").write_text(text)
    return text


# -- the command ----------------------------------------------------------------------------
def parse(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.reference", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="e.g. results/reference/h100")
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--ablation-batch-sizes", nargs="*", type=int, default=[1, 32])
    add_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    points = reference_points(args.engines, args.datasets, args.batch_sizes, args.ablation_batch_sizes)
    args.out.mkdir(parents=True, exist_ok=True)
    record_command(args.out, "bench.reference", argv)
    if measure(points, args.out, Settings.from_args(args), args.budget_minutes):
        return INCOMPLETE
    print(write_folder(args.out))
    return 0
