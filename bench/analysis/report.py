"""python -m bench.report: comparison and release tables, plots and a recommendation.

    python -m bench.report runs/multirun/2026-11-24/*            # engines side by side
    python -m bench.report runs/... --html                       # the same as one report.html
    python -m bench.report --baseline results/v1/* --candidate runs/multirun/...   # release vs release
    python -m bench.report runs/... --max-wer 0.08 --min-rtfx 20 --max-memory-gib 40
    python -m bench.report runs/... --gpu-hourly-price 3.50      # cost per 1,000 audio hours
    python -m bench.report --reference results/reference/h100    # a bench.reference folder's tables
    python -m bench.report --profiles runs/... --out results/profiles/h100   # profile=true runs

Rows from different hardware or datasets, or random-weight runs beside pretrained ones, are
not put in one comparison unless --allow-mixed is given; the recommendation leaves out runs
that compiled while timed unless --allow-compiles (its rules: docs/recommendation.md). Runs
with real weights over the same clips are also compared transcript by transcript
(agreement.csv). Outputs go to --out (default: the current folder).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.analysis import html
from bench.analysis.comparison import check_comparable, comparison_frame, figure_notes
from bench.analysis.plots import draw_all
from bench.analysis.recommendation import Constraints, recommend
from bench.analysis.release import release_frame
from bench.analysis.runs import Run, load_runs
from bench.analysis.table import markdown
from bench.analysis.transcripts import agreement_frame, agreement_text
from bench.errors import BenchError

PLOT_CAPTIONS = {"wer_vs_rtfx.png": "WER against RTFx, with the Pareto front",
                 "rtfx_vs_batch.png": "RTFx against batch size"}  # fmt: skip


@dataclass
class Comparison:
    """An engine comparison, written as comparison.md (and report.html) and printed."""

    table: pd.DataFrame
    advice: str
    notes: str
    agreement: pd.DataFrame
    plots: list[str] = field(default_factory=list)  # file names under the output folder
    missing_plots: list[str] = field(default_factory=list)  # why a figure was not drawn

    @property
    def hardware(self) -> str:
        return "; ".join(sorted(self.table.hardware.unique()))

    def markdown(self) -> str:
        text = f"# Engine comparison\n\nHardware: {self.hardware}\n\n"
        text += markdown(self.table.drop(columns="hardware")) + "\n" + self.advice + self.notes
        if not self.agreement.empty:
            text += "\n" + agreement_text(self.agreement)
        figures = [f"![{PLOT_CAPTIONS[name]}]({name})" for name in self.plots] + self.missing_plots
        return text + ("\n## Figures\n\n" + "\n\n".join(figures) + "\n" if figures else "")

    def html(self, out: Path) -> str:
        body = [html.paragraphs(f"Hardware: {self.hardware}"), html.table(self.table.drop(columns="hardware"))]
        body += [html.paragraphs(self.advice), html.paragraphs(self.notes, "note")]
        if not self.agreement.empty:
            body += ["<h2>Transcript agreement</h2>", html.paragraphs(agreement_text(self.agreement).split("\n", 2)[2])]
        body += ["<h2>Figures</h2>"]
        body += [html.figure(out / name, PLOT_CAPTIONS[name]) for name in self.plots]
        body += [html.paragraphs(line, "note") for line in self.missing_plots]
        return html.page("Engine comparison", body)


def compare(
    runs: list[Run], out: Path, constraints: Constraints, hourly_price: float | None = None, allow_compiles=False
) -> Comparison:
    """The comparison of these runs, its figures drawn into out."""
    table = comparison_frame(runs, hourly_price)
    advice = recommend(runs, constraints, allow_compiles, hourly_price)
    plots, missing = draw_all(runs, out)
    return Comparison(table, advice, figure_notes(runs), agreement_frame(runs), plots, missing)


def write_comparison(comparison: Comparison, out: Path, as_html: bool) -> list[str]:
    """comparison.md, comparison.csv, agreement.csv (real weights) and report.html (as_html)
    beside the figures; the names of every file written."""
    (out / "comparison.md").write_text(comparison.markdown())
    comparison.table.to_csv(out / "comparison.csv", index=False)
    written = ["comparison.md", "comparison.csv"]
    if not comparison.agreement.empty:
        comparison.agreement.to_csv(out / "agreement.csv", index=False)
        written.append("agreement.csv")
    if as_html:
        (out / "report.html").write_text(comparison.html(out))
        written.append("report.html")
    return written + comparison.plots


def wer_fraction(text: str) -> float:
    """--max-wer as a fraction: "0.08", or "8%". A bare number over 1 is refused rather than
    read as a WER of 800%: whoever wrote 8 meant 8%, and a limit of 8 would admit any run."""
    value = float(text.removesuffix("%")) / (100 if text.endswith("%") else 1)
    if value > 1:
        raise argparse.ArgumentTypeError(f"{text}: WER is a fraction: 0.08 means 8% (or write 8%)")
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text}: a WER limit cannot be negative")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="*", help="run folders, folders holding them, or globs")
    parser.add_argument("--baseline", nargs="+", help="release comparison: the baseline runs")
    parser.add_argument("--candidate", nargs="+", help="release comparison: the candidate runs")
    parser.add_argument("--out", type=Path, help="the folder to write into (default: a new folder, "
                        "reports/<date>_<time>, so nothing lands among your files)")  # fmt: skip
    parser.add_argument("--html", action="store_true", help="also write report.html: one self-contained page")
    parser.add_argument(
        "--allow-mixed", action="store_true", help="compare across hardware, datasets or weights (random/pretrained)"
    )
    parser.add_argument(
        "--allow-compiles",
        action="store_true",
        help="let the recommendation judge runs that compiled or captured while a pass was timed",
    )
    parser.add_argument("--max-wer", type=wer_fraction, help="the most WER a recommendation may have, as a fraction "
                        "(0.08) or a percentage (8%%)")  # fmt: skip
    parser.add_argument("--min-rtfx", type=float)
    parser.add_argument("--max-memory-gib", type=float)
    parser.add_argument("--max-latency-s", type=float, help="budget for p90 latency per utterance")
    parser.add_argument(
        "--gpu-hourly-price",
        type=float,
        help="what an hour of the measuring machine costs: adds cost per 1,000 audio hours (else each run's "
        "run.gpu_hourly_price)",
    )
    parser.add_argument(
        "--reference", type=Path, help="a bench.reference folder: write its README.md and tables from its runs"
    )
    parser.add_argument("--profiles", nargs="+", help="profiled runs: write profiles.md and phase tables to --out")
    args = parser.parse_args(argv)
    args.out = args.out or Path("reports") / time.strftime("%Y-%m-%d_%H-%M-%S")
    try:
        if args.gpu_hourly_price is not None and args.gpu_hourly_price <= 0:
            raise BenchError(f"--gpu-hourly-price {args.gpu_hourly_price:g}: must be above 0")
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
            return _release(args)
        runs = load_runs(args.runs)
        check_comparable(runs, args.allow_mixed)
        constraints = Constraints(args.max_wer, args.min_rtfx, args.max_memory_gib, args.max_latency_s)
        comparison = compare(runs, args.out, constraints, args.gpu_hourly_price, args.allow_compiles)
        written = write_comparison(comparison, args.out, args.html)
        print(comparison.markdown())
        print(f"written to {args.out}: {', '.join(written)}")
        return 0
    except BenchError as err:
        print(f"bench.report: error: {err}", file=sys.stderr)
        return 2


def _release(args) -> int:
    if not (args.baseline and args.candidate):
        raise BenchError("a release comparison needs both --baseline and --candidate")
    baseline, candidate = load_runs(args.baseline), load_runs(args.candidate)
    check_comparable(baseline + candidate, args.allow_mixed)
    table = release_frame(baseline, candidate)
    text = "# Release comparison\n\n" + markdown(table)
    (args.out / "release.md").write_text(text)
    table.to_csv(args.out / "release.csv", index=False)
    if args.html:
        (args.out / "report.html").write_text(html.page("Release comparison", [html.table(table)]))
    print(text)
    return 0
