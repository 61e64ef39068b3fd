"""The gate's verdicts in words, one sentence per check under its table."""

from __future__ import annotations

import pandas as pd


def verdicts(table: pd.DataFrame) -> str:
    """Each check's verdict in a sentence: the 95% interval decides, not the point estimate, so
    a run measured slower than the limit passes while its interval reaches back under it."""
    lines = ["A check fails only when its whole 95% interval lies beyond the limit: the interval decides."]
    for _, row in table.iterrows():
        slower, ci, limit = row["slower by %"], row["95% CI %"], row["limit %"]
        measured = f"slower by {slower:.1f}%" if slower >= 0 else f"faster by {-slower:.1f}%"
        if row["verdict"] == "REGRESSION":
            why = f"its whole 95% interval {ci}% lies above the {limit}% limit: a regression"
        elif slower > float(limit):
            why = f"its 95% interval {ci}% reaches below the {limit}% limit, so noise may explain it: ok"
        else:
            why = f"within the {limit}% limit (95% interval {ci}%): ok"
        lines.append(f"- {row['what']} ({row['check']}): {measured}; {why}.")
    return "\n".join(lines) + "\n"
