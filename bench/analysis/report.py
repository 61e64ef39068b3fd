"""python -m bench.report: comparison and release tables, plots and a recommendation.

    python -m bench.report runs/multirun/2026-11-24/*            # engines side by side
    python -m bench.report --baseline results/v1/* --candidate runs/multirun/...   # release vs release
    python -m bench.report runs/... --max-wer 0.08 --min-rtfx 20 --max-memory-gib 40
    python -m bench.report --reference results/reference/h100    # a bench.reference folder's tables
    python -m bench.report --profiles runs/... --out results/profiles/h100   # profile=true runs

Rows from different hardware or datasets are not put in one comparison unless
--allow-mixed is given. Runs with real weights over the same clips are also compared
transcript by transcript (agreement.csv). Outputs go to --out (default: the current folder).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.analysis.comparison import check_comparable, comparison_frame, recommend
from bench.analysis.plots import plot_rtfx_vs_batch, plot_wer_vs_rtfx
from bench.analysis.release import release_frame
from bench.analysis.runs import load_runs
from bench.analysis.table import markdown
from bench.analysis.transcripts import agreement_frame, agreement_text
from bench.errors import BenchError


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
        alike = agreement_frame(runs)
        if not alike.empty:
            text += "\n" + agreement_text(alike)
            alike.to_csv(args.out / "agreement.csv", index=False)
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
        written = ["comparison.md", "comparison.csv", *(["agreement.csv"] if not alike.empty else []), *plots]
        print(f"written to {args.out}: {', '.join(written)}")
        return 0
    except BenchError as err:
        print(f"bench.report: error: {err}", file=sys.stderr)
        return 2
