"""Text tables: run summaries for the terminal, and Markdown for reports."""

from __future__ import annotations

import math
import numbers

import pandas as pd

from bench.host.busy import busy_notes
from bench.pipeline.cells import energy_reasons, table_row
from bench.pipeline.record import Summary

SIGNIFICANT = 3  # digits every table shows of a measured figure: more would be noise


def readable(value) -> str:
    """A cell as people read it: integers and figures of 1,000 or more with thousands
    separators, smaller figures to three significant digits, never in exponent form
    (1,100 tok/s rather than 1.1e+03); a missing value as n/a."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, numbers.Number):
        return str(value)
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    if abs(value) < 10 ** -(SIGNIFICANT + 1):
        return f"{value:.{SIGNIFICANT - 1}e}"  # a figure this small has no readable fixed form
    decimals = max(0, SIGNIFICANT - 1 - math.floor(math.log10(abs(value))))
    rounded = round(value, decimals)
    if abs(rounded) >= 1000:
        return f"{rounded:,.0f}"
    return f"{rounded:.{decimals}f}"


# Columns that hold a WER (a fraction in frames, CSV and summary.json). bench writes a WER one
# way wherever people read it: a percentage to three significant digits (7.18%, 28.1%), and a
# difference of two WERs in percentage points ("+2.4 points"): docs/reports.md.
WER_COLUMNS = ("WER", "WER base", "WER cand")


def wer_percent(value) -> str:
    """A WER as bench writes it: 0.0718 -> 7.18%; a missing one as n/a."""
    if not isinstance(value, numbers.Number) or isinstance(value, bool) or math.isnan(value):
        return readable(value)
    return f"{readable(100 * value)}%"


def cell(column: str, value) -> str:
    """One table cell: a WER column as a percentage, any other figure as readable() writes it."""
    return wer_percent(value) if column in WER_COLUMNS else readable(value)


def markdown(frame: pd.DataFrame) -> str:
    """A Markdown table (no optional tabulate dependency), cells as cell() writes them."""
    columns = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += [
        "| " + " | ".join(cell(c, v) for c, v in zip(columns, row, strict=True)) + " |"
        for row in frame.itertuples(index=False)
    ]
    return "\n".join(lines) + "\n"


def plain(frame: pd.DataFrame) -> str:
    """The same cells as markdown(), aligned for a terminal."""
    return frame.apply(lambda column: column.map(lambda v: cell(str(column.name), v))).to_string(index=False)


# the terminal's table after a run: what a user checks first
TERMINAL_COLUMNS = ["engine", "model", "dtype", "weights", "dataset", "batch", "n", "failed", "audio s", "RTFx",
                    "RTFx 95% CI", "passes", "WER", "tok/s", "p50 s", "peak GiB", "load s", "cold start s", "J/audio h",
                    "cost/1k audio h", "compiled while timed", "host"]  # fmt: skip


def summary_frame(summaries: list[Summary]) -> pd.DataFrame:
    frame = pd.DataFrame([table_row(s) for s in summaries], columns=TERMINAL_COLUMNS).fillna(float("nan"))
    # columns of figures most runs lack: shown only when a run has one
    optional = ("cost/1k audio h", "compiled while timed", "host")
    return frame.drop(columns=[c for c in optional if frame[c].isna().all()])


def format_summaries(summaries: list[Summary]) -> str:
    """The table, a line for each reason a run has no energy figure, and one for a run timed on
    a busy host."""
    notes = [f"energy {note}" for note in energy_reasons(summaries)] + [f"{note}." for note in busy_notes(summaries)]
    return plain(summary_frame(summaries)) + "".join(f"\n{note}" for note in notes)
