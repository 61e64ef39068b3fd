"""The gate's latency check for bench.load runs: p90 latency against the baseline's, each
side's answered requests resampled on their own (2000 times). A regression is a 95% interval
of candidate p90 / baseline p90 wholly above 1 + --latency-threshold."""

from __future__ import annotations

import numpy as np

from bench.analysis.gate_verdicts import CATCHES, catches_above
from bench.analysis.runs import Run
from bench.stats import RESAMPLES

LATENCY_POINT = 90  # the latency percentile a load run is gated on


def latencies(run: Run) -> list[float]:
    """A load run's answered requests' latencies (what the latency check resamples)."""
    rows = run.utterances
    return rows.loc[rows.status == "ok", "latency_s"].astype(float).tolist()


def latency_row(run: Run, entry: dict, threshold: float, rng) -> dict:
    """A load run's p90 latency against its baseline's: requests resampled on each side."""
    candidate, base = np.asarray(latencies(run)), np.asarray(entry["latency_s"])
    draws = [np.percentile(x[rng.integers(0, x.size, (RESAMPLES, x.size))], LATENCY_POINT, axis=1)
             for x in (candidate, base)]  # fmt: skip
    low, high = np.percentile(draws[0] / draws[1], [2.5, 97.5])
    cand_p, base_p = np.percentile(candidate, LATENCY_POINT), np.percentile(base, LATENCY_POINT)
    return {
        "check": f"p{LATENCY_POINT} latency vs baseline",
        "what": f"{run.summary.engine} c{run.summary.batch_size}",
        "baseline": float(base_p),
        "candidate": float(cand_p),
        "unit": "s",
        "slower by %": 100 * (cand_p / base_p - 1),
        "95% CI %": f"[{100 * (low - 1):+.1f}, {100 * (high - 1):+.1f}]",
        "limit %": f"+{100 * threshold:.0f}",
        "verdict": "REGRESSION" if low > 1 + threshold else "ok",
        CATCHES: catches_above(cand_p / base_p, low, threshold),
    }
