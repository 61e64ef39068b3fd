"""python -m bench.gate_power: how large a slowdown the gate catches, measured on real runs.

    python -m bench.gate_power --baseline results/baselines/ci_cpu_tiny.json --ratios-only RUNS...

Each RUNS folder is one fresh measurement of what the gate checks (in CI: one smoke run,
voxtral_patched timed in turns with voxtral_stock). For each slowdown s the numerator engine
of every ratio (voxtral_patched) is made s slower in every run (its timed batches x (1 + s),
as a change to its code would), and the gate is run on each: the detection rate at s is the
share of runs it fails. The noise is the runs' own (the machine's), not a model of it, so the
table is the gate's power on that machine. The smallest s caught in at least 19 of 20 runs is
the slowdown the gate can be trusted to catch there.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from bench.analysis.gate import default_ratios, gate
from bench.analysis.runs import Run, load_runs
from bench.analysis.table import markdown
from bench.errors import BenchError

SLOWDOWNS = (0.0, 0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.40, 0.50)
DETECTED = 0.95  # "19 times out of 20"


def slowed(runs: list[Run], engines: set[str], slowdown: float) -> list[Run]:
    """The runs with every timed batch of `engines` taking (1 + slowdown) times as long."""
    out = []
    for run in runs:
        copy = Run(run.path, run.summary)
        if run.summary.engine in engines:
            copy.__dict__["batches"] = run.batches.assign(processing_s=run.batches.processing_s * (1 + slowdown))
        out.append(copy)
    return out


def power_table(baseline: dict, measurements: list[list[Run]], slowdowns=SLOWDOWNS, **gate_options) -> pd.DataFrame:
    pairs = gate_options.get("pairs") or default_ratios()
    numerators = {pair.split("/")[0] for pair in pairs}
    rows = []
    for slowdown in slowdowns:
        caught = sum(gate(baseline, slowed(runs, numerators, slowdown), **gate_options)[1] for runs in measurements)
        rows.append(
            {
                "slowdown %": round(100 * slowdown),
                "runs": len(measurements),
                "caught": caught,
                "detection rate": caught / len(measurements),
            }
        )
    return pd.DataFrame(rows)


def smallest_caught(table: pd.DataFrame) -> int | None:
    """The smallest slowdown (%) caught in at least 95% of runs, from which on every larger one is too."""
    caught = table["detection rate"] >= DETECTED
    for i in range(len(table)):
        if caught.iloc[i:].all():
            return int(table["slowdown %"].iloc[i])
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gate_power", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders, one fresh measurement each")
    parser.add_argument("--baseline", type=Path, required=True)
    parser.add_argument("--ratios-only", action="store_true")
    parser.add_argument("--threshold", type=float, default=0.10)
    parser.add_argument("--ratio-threshold", type=float, default=0.10)
    parser.add_argument("--out", type=Path, help="also write the table (Markdown) there")
    args = parser.parse_args(argv)
    try:
        baseline = json.loads(args.baseline.read_text())
        measurements = [load_runs([folder]) for folder in args.runs]
        table = power_table(
            baseline,
            measurements,
            threshold=args.threshold,
            ratio_threshold=args.ratio_threshold,
            ratios_only=args.ratios_only,
        )
    except BenchError as err:
        print(f"bench.gate_power: error: {err}", file=sys.stderr)
        return 2
    hardware = sorted({r.hardware for runs in measurements for r in runs})
    smallest = smallest_caught(table)
    verdict = (
        f"The gate catches a slowdown of {smallest}% or more in at least 19 of 20 runs."
        if smallest is not None
        else f"No slowdown up to {table['slowdown %'].max()}% is caught in 19 of 20 runs."
    )
    text = (
        f"# Gate power\n\n{len(measurements)} fresh runs on {'; '.join(hardware)}, against {args.baseline} "
        f"(limits: RTF +{100 * args.threshold:.0f}%, ratio -{100 * args.ratio_threshold:.0f}%"
        f"{', ratios only' if args.ratios_only else ''}). A slowdown of s% multiplies every timed batch of "
        "the ratio's numerator engine by (1 + s).\n\n" + markdown(table) + "\n" + verdict + "\n"
    )
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0
