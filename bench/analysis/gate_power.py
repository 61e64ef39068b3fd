"""python -m bench.gate_power: how large a slowdown the gate catches, measured on real runs.

    python -m bench.gate_power --pairs --ratios-only RUNS...        (as CI gates: run against run)
    python -m bench.gate_power --baseline FILE.json --ratios-only RUNS...

Each RUNS folder is one fresh measurement of what the gate checks (in CI: one smoke run,
voxtral_patched timed in turns with voxtral_stock), all of the same code, so the truth is
known: no slowdown. For each slowdown s the numerator engine of every ratio (voxtral_patched)
is made s slower in the candidate (its timed batches x (1 + s), as a change to its code
would), and the gate is run. With --pairs every ordered pair of runs is one comparison, the
first run the baseline and the second the candidate, as `nox -s gate` compares one run of the
reference code with one of the change on the same machine; with --baseline every run is
gated against that file. The detection rate at s is the share of comparisons that fail. The
noise is the runs' own (the machine's, between processes too), not a model of it, so the table
is the gate's power on that machine. The smallest s caught in at least 95% of comparisons is
the slowdown the gate can be trusted to catch there; the row at s = 0 is its false alarms.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path

import pandas as pd

from bench.analysis.gate import baseline_of, default_ratios, gate
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


def run_pairs(baselines: list[dict], measurements: list[list[Run]]) -> list[tuple[dict, list[Run]]]:
    """Every ordered pair of measurements as (baseline of the first, the second)."""
    return [(baselines[i], measurements[j]) for i, j in itertools.permutations(range(len(measurements)), 2)]


def power_table(comparisons: list[tuple[dict, list[Run]]], slowdowns=SLOWDOWNS, **gate_options) -> pd.DataFrame:
    """Per slowdown, how many (baseline, candidate runs) comparisons fail with the candidate slowed."""
    pairs = gate_options.get("pairs") or default_ratios()
    numerators = {pair.split("/")[0] for pair in pairs}
    rows = []
    for slowdown in slowdowns:
        caught = sum(
            gate(baseline, slowed(runs, numerators, slowdown), **gate_options)[1] for baseline, runs in comparisons
        )
        rows.append(
            {
                "slowdown %": round(100 * slowdown),
                "comparisons": len(comparisons),
                "caught": caught,
                "detection rate": caught / len(comparisons),
            }
        )
    return pd.DataFrame(rows)


def smallest_caught(table: pd.DataFrame) -> int | None:
    """The smallest slowdown (%) caught in at least 95% of comparisons, from which on every larger one is too."""
    caught = table["detection rate"] >= DETECTED
    for i in range(len(table)):
        if caught.iloc[i:].all():
            return int(table["slowdown %"].iloc[i])
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gate_power", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders, one fresh measurement each")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--baseline", type=Path, help="gate every run against this baseline file")
    source.add_argument("--pairs", action="store_true", help="gate every run against every other run")
    parser.add_argument("--ratios-only", action="store_true")
    parser.add_argument("--threshold", type=float, default=0.10)
    parser.add_argument("--ratio-threshold", type=float, default=0.10)
    parser.add_argument("--out", type=Path, help="also write the table (Markdown) there")
    args = parser.parse_args(argv)
    try:
        measurements = [load_runs([folder]) for folder in args.runs]
        # each run as a baseline, as read from a file: its speed-ups, and with --pairs its comparisons
        baselines = [json.loads(json.dumps(baseline_of(runs))) for runs in measurements]
        if args.pairs:
            if len(measurements) < 2:
                raise BenchError("--pairs needs at least two runs")
            comparisons = run_pairs(baselines, measurements)
        else:
            comparisons = [(json.loads(args.baseline.read_text()), runs) for runs in measurements]
        table = power_table(
            comparisons,
            threshold=args.threshold,
            ratio_threshold=args.ratio_threshold,
            ratios_only=args.ratios_only,
        )
    except BenchError as err:
        print(f"bench.gate_power: error: {err}", file=sys.stderr)
        return 2
    hardware = sorted({r.hardware for runs in measurements for r in runs})
    smallest = smallest_caught(table)
    false_alarms = int(table["caught"].iloc[0]) if table["slowdown %"].iloc[0] == 0 else None
    verdict = (
        f"The gate catches a slowdown of {smallest}% or more in at least 95% of comparisons"
        if smallest is not None
        else f"No slowdown up to {table['slowdown %'].max()}% is caught in 95% of comparisons"
    ) + (f"; with none, it failed {false_alarms} of {len(comparisons)}." if false_alarms is not None else ".")
    speedups = sorted(entry["ratio"] for baseline in baselines for entry in baseline["ratios"])
    spread = (
        f" Their speed-ups ({len(speedups)}, one per run and ratio) run from {speedups[0]:.3g} to {speedups[-1]:.3g}, "
        f"median {statistics.median(speedups):.3g}."
        if speedups
        else ""
    )
    against = "each other, every ordered pair (baseline, candidate)" if args.pairs else str(args.baseline)
    text = (
        f"# Gate power\n\n{len(measurements)} fresh runs on {'; '.join(hardware)}, against {against} "
        f"(limits: RTF +{100 * args.threshold:.0f}%, ratio -{100 * args.ratio_threshold:.0f}%"
        f"{', ratios only' if args.ratios_only else ''}). A slowdown of s% multiplies every timed batch of "
        "the ratio's numerator engine by (1 + s)." + spread + "\n\n" + markdown(table) + "\n" + verdict + "\n"
    )
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0
