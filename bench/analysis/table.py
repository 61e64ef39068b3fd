"""Text tables: run summaries for the terminal, and Markdown for reports."""

from __future__ import annotations

import math

import pandas as pd

from bench.pipeline.record import Summary, table_row


def markdown(frame: pd.DataFrame) -> str:
    """A Markdown table (no optional tabulate dependency); floats to 3 significant digits."""

    def cell(value):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "n/a"
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


# the terminal's table after a run: what a user checks first
TERMINAL_COLUMNS = ["engine", "model", "weights", "dataset", "batch", "n", "failed", "audio s", "RTFx", "RTFx 95% CI",
                    "WER", "tok/s", "p50 s", "peak GiB", "load s", "cold start s"]  # fmt: skip


def summary_frame(summaries: list[Summary]) -> pd.DataFrame:
    rows = [{c: table_row(s)[c] for c in TERMINAL_COLUMNS} for s in summaries]
    return pd.DataFrame(rows, columns=TERMINAL_COLUMNS).fillna(float("nan"))


def format_summaries(summaries: list[Summary]) -> str:
    frame = summary_frame(summaries)
    return frame.to_string(index=False, float_format=lambda v: f"{v:.3g}", na_rep="n/a")
