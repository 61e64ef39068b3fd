"""Summary statistics over raw per-batch timings."""

from __future__ import annotations

import numpy as np


def ratio_ci(
    processing_s: np.ndarray,
    audio_s: np.ndarray,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Bootstrap CI of RTFx (sum of audio / sum of processing) by resampling batches.

    Batches are the unit that was timed, so they are what is resampled. None with fewer
    than two batches: one value has no spread to estimate.
    """
    processing_s, audio_s = np.asarray(processing_s, float), np.asarray(audio_s, float)
    if len(processing_s) < 2:
        return None
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(processing_s), size=(resamples, len(processing_s)))
    rtfx = audio_s[picks].sum(axis=1) / processing_s[picks].sum(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(rtfx, [tail, 100 - tail])
    return float(low), float(high)


def percentiles(values, points=(50, 90, 99)) -> dict[str, float | None]:
    values = np.asarray(values, float)
    if values.size == 0:
        return {f"p{p}": None for p in points}
    return {f"p{p}": float(np.percentile(values, p)) for p in points}
