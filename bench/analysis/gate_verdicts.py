"""The gate's verdicts in words, one sentence per check under its table, and what each check
can detect at all.

A check fails when its whole 95% interval lies beyond its limit. A candidate measured with
the same spread but slower by s moves the whole distribution of draws by the same factor
(every pass scaled alike scales every draw), so the smallest slowdown the check can
fail on follows from the interval it computed: for "slower than the baseline" checks, the
point must reach (1 + limit) x point / low; for a speed-up that must not drop, the point must
fall to (1 - limit) x point / high. More clips or repeats narrow the interval and lower it.

That figure always lies above the limit (by the interval's lower half-width): a check is
blind, and warned about, when it lies above twice the limit, i.e. when the noise the check
must see through is wider than the slowdown it exists to allow.
"""

from __future__ import annotations

import pandas as pd

CATCHES = "catches from %"  # the table's column: the smallest slowdown the check can fail on
BLIND = 2.0  # a check that cannot fail below this many times its limit is warned about


def catches_above(point: float, low: float, threshold: float) -> float:
    """For a check of candidate / baseline (slower: above 1): the smallest slowdown, in %, that a
    candidate with this spread fails on (its interval's low end reaches 1 + threshold)."""
    return 100 * ((1 + threshold) * point / low - 1)


def catches_below(point: float, high: float, threshold: float) -> float:
    """For a speed-up that must not drop (candidate speed-up / baseline's: below 1 is slower):
    the smallest loss, in %, a candidate with this spread fails on."""
    return 100 * (1 - (1 - threshold) * point / high)


def blind_checks(table: pd.DataFrame) -> list[str]:
    """A sentence for each check too noisy for its limit: it cannot fail below twice the limit."""
    return [
        f"{row['what']} ({row['check']}): this gate cannot fail below +{row[CATCHES]:.1f}%, over twice its "
        f"{row['limit %']}% limit: add clips or repeats"
        for _, row in table.iterrows()
        if row[CATCHES] > BLIND * float(row["limit %"])
    ]


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
    lines += [f"- WARNING: {line}." for line in blind_checks(table)]
    return "\n".join(lines) + "\n"
