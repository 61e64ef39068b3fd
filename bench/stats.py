"""Summary statistics over raw per-batch timings."""

from __future__ import annotations

import numpy as np

RESAMPLES = 2000  # bootstrap draws behind every interval bench prints


def pass_picks(passes, resamples: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Bootstrap indices into a run's batches, one (resamples x batches) array per timed pass:
    batches are the unit that was timed, so they are resampled, each within its own pass."""
    passes = np.asarray(passes)
    picks = []
    for value in np.unique(passes):
        index = np.flatnonzero(passes == value)
        picks.append(index[rng.integers(0, len(index), size=(resamples, len(index)))])
    return picks


def shared_picks(passes, draw: np.ndarray) -> list[np.ndarray]:
    """Per timed pass, the batches a (resamples x batches) index draw picks: one draw applied
    to every pass of every run that holds the same batches, so that all of them are resampled
    alike (the same clips in each draw) and what differs between the runs is their timing."""
    passes = np.asarray(passes)
    return [np.flatnonzero(passes == value)[draw] for value in np.unique(passes)]


def rtf_point(processing_s, audio_s, passes) -> float:
    """A run's RTF as its summary reports it: per timed pass the sum of processing over the
    sum of audio, then the median over passes. Every RTF bench compares is this one figure."""
    processing_s, audio_s, passes = np.asarray(processing_s, float), np.asarray(audio_s, float), np.asarray(passes)
    per_pass = [processing_s[passes == p].sum() / audio_s[passes == p].sum() for p in np.unique(passes)]
    return float(np.median(per_pass))


def rtf_samples(processing_s, audio_s, passes, resamples: int, rng, picks=None) -> np.ndarray:
    """Bootstrap distribution of a run's RTF as its summary estimates it: per timed pass
    (repeat) the sum of processing over the sum of audio, then the median over passes.
    `picks` (from pass_picks) resamples two runs of the same batches jointly."""
    processing_s, audio_s = np.asarray(processing_s, float), np.asarray(audio_s, float)
    if picks is None:
        picks = pass_picks(passes, resamples, rng)
    per_pass = np.stack([processing_s[p].sum(axis=1) / audio_s[p].sum(axis=1) for p in picks])
    return np.median(per_pass, axis=0)


def ratio_ci(
    processing_s: np.ndarray,
    audio_s: np.ndarray,
    passes: np.ndarray | None = None,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Bootstrap CI of RTFx = 1 / RTF, the RTF estimated as rtf_samples does (so the
    interval is about the very figure the summary reports, the median over repeats).
    None with fewer than two batches: one value has no spread to estimate."""
    if len(processing_s) < 2:
        return None
    passes = np.zeros(len(processing_s)) if passes is None else passes
    rtfx = 1 / rtf_samples(processing_s, audio_s, passes, resamples, np.random.default_rng(seed))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(rtfx, [tail, 100 - tail])
    return float(low), float(high)


def paired_rate_difference_ci(
    errors_a, errors_b, words, resamples: int, rng: np.random.Generator, confidence: float = 0.95
) -> tuple[float, float]:
    """Bootstrap interval of (errors_b - errors_a) / words summed over items both scored: the
    items (utterances) are resampled together, so what differs is each system's errors on the
    same speech, not which speech a draw picked. The WER difference of two runs."""
    errors_a, errors_b, words = (np.asarray(v, float) for v in (errors_a, errors_b, words))
    picks = rng.integers(0, len(words), size=(resamples, len(words)))
    diff = (errors_b[picks].sum(1) - errors_a[picks].sum(1)) / np.maximum(words[picks].sum(1), 1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(diff, [tail, 100 - tail])
    return float(low), float(high)


def rate_ci(errors, words, resamples: int, rng: np.random.Generator, confidence: float = 0.95) -> tuple[float, float]:
    """Bootstrap interval of errors / words summed over items (utterances resampled whole): a
    run's WER interval, the paired difference above against a system that makes no error."""
    return paired_rate_difference_ci(np.zeros(len(words)), errors, words, resamples, rng, confidence)


def percentiles(values, points=(50, 90, 99)) -> dict[str, float | None]:
    values = np.asarray(values, float)
    if values.size == 0:
        return {f"p{p}": None for p in points}
    return {f"p{p}": float(np.percentile(values, p)) for p in points}


def percentile_ci(values, point: float, resamples: int = RESAMPLES, seed: int = 0, confidence: float = 0.95):
    """A 95% bootstrap interval of the `point` percentile of values (resampled whole, seeded);
    None with fewer than two values."""
    values = np.asarray(values, float)
    if values.size < 2:
        return None
    draws = np.random.default_rng(seed).integers(0, values.size, size=(resamples, values.size))
    estimates = np.percentile(values[draws], point, axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(estimates, [tail, 100 - tail])
    return [float(low), float(high)]


def proportion_ci(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson's score interval of a share (successes of n); None with no trials. Unlike the
    plain normal interval it stays inside [0, 1] and is not empty at a share of 0 or 1."""
    if n == 0:
        return None
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    share = successes / n
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))
