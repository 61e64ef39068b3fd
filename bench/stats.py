"""Summary statistics over raw per-batch timings."""

from __future__ import annotations

import numpy as np

RESAMPLES = 2000  # bootstrap draws behind every WER and latency interval bench prints
# draws behind every speed comparison: a t of 2 degrees of freedom has heavy tails, whose 2.5th
# percentile 2,000 draws would place only to within about 6%
SPEED_DRAWS = 20_000


PASS_METHOD = (
    "95% interval over the timed passes: Student's t on the log of each pass's RTF (n-1 degrees of "
    "freedom, so three passes count as three measurements, not as their batches); a run of one pass "
    "has no run-to-run spread to measure, and its interval resamples that pass's batches only"
)


# the same in the words of a results folder's method line (docs/statistics.md says why)
PASS_METHOD_WORDS = (
    "its 95% interval over the timed passes (Student's t on each pass's RTF: a slow pass is run-to-run "
    "variation, and widens it; a run of one pass resamples its batches only, so run-to-run variation is "
    "not in its interval)"
)


def pass_rtfs(processing_s, audio_s, passes) -> np.ndarray:
    """Each timed pass's RTF: the sum of its processing over the sum of its audio."""
    processing_s, audio_s, passes = np.asarray(processing_s, float), np.asarray(audio_s, float), np.asarray(passes)
    return np.array([processing_s[passes == p].sum() / audio_s[passes == p].sum() for p in np.unique(passes)])


def rtf_point(processing_s, audio_s, passes) -> float:
    """A run's RTF as its summary reports it: per timed pass the sum of processing over the
    sum of audio, then the median over passes. Every RTF bench compares is this one figure."""
    return float(np.median(pass_rtfs(processing_s, audio_s, passes)))


def pass_spread(per_pass) -> float | None:
    """How far a run's passes lie apart: the standard deviation of the log of their RTFs (a
    relative spread: 0.05 is about 5%); None with one pass."""
    per_pass = np.asarray(per_pass, float)
    return float(np.std(np.log(per_pass), ddof=1)) if per_pass.size > 1 else None


def t_draws(log_passes: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Draws of the mean log RTF of runs whose passes are the rows of log_passes (one column per
    run; several columns only for runs timed in turns, pass i of each at the same time), from
    the multivariate Student t that the passes imply: mean + N(0, S/n) / sqrt(chi2(n-1)/(n-1)).
    Each column's 2.5 and 97.5 percentiles are the t interval of its mean, and a difference of
    two columns is the paired t interval of their difference (the drift they shared cancels).
    The normal part is drawn as a combination of the passes' deviations, which has covariance
    S/n exactly, so no matrix need be factored (runs with equal passes are fine)."""
    n = log_passes.shape[0]
    deviations = log_passes - log_passes.mean(axis=0)
    normal = rng.standard_normal((resamples, n)) @ deviations / np.sqrt(n * (n - 1))
    scale = np.sqrt(rng.chisquare(n - 1, size=(resamples, 1)) / (n - 1))
    return log_passes.mean(axis=0) + normal / scale


def _batch_picks(passes, resamples: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Bootstrap indices into a one-pass run's batches (what is left to resample in one pass)."""
    passes = np.asarray(passes)
    index = np.arange(len(passes))
    return [index[rng.integers(0, len(index), size=(resamples, len(index)))]]


def shared_picks(passes, draw: np.ndarray) -> list[np.ndarray]:
    """Per timed pass, the batches a (resamples x batches) index draw picks: one draw applied
    to runs of one pass timed in turns on the same batches, so they are resampled alike."""
    passes = np.asarray(passes)
    return [np.flatnonzero(passes == value)[draw] for value in np.unique(passes)]


def rtf_samples(processing_s, audio_s, passes, resamples: int, rng, picks=None) -> np.ndarray:
    """Draws of a run's RTF for its interval (PASS_METHOD): with two passes or more, t draws over
    the passes (t_draws); with one, the pass's batches resampled (`picks`, from shared_picks,
    resamples runs of one pass timed in turns alike)."""
    processing_s, audio_s, passes = np.asarray(processing_s, float), np.asarray(audio_s, float), np.asarray(passes)
    per_pass = pass_rtfs(processing_s, audio_s, passes)
    if per_pass.size > 1:
        with np.errstate(over="ignore"):  # a t draw of few passes can leave float range: +inf, far in the tail
            return np.exp(t_draws(np.log(per_pass)[:, None], resamples, rng)[:, 0])
    picks = _batch_picks(passes, resamples, rng) if picks is None else picks
    return processing_s[picks[0]].sum(axis=1) / audio_s[picks[0]].sum(axis=1)


def ratio_ci(
    processing_s: np.ndarray,
    audio_s: np.ndarray,
    passes: np.ndarray | None = None,
    confidence: float = 0.95,
    resamples: int = SPEED_DRAWS,
    seed: int = 0,
) -> tuple[float, float] | None:
    """The 95% interval of a run's RTFx = 1 / RTF (PASS_METHOD): with two passes or more, the
    t interval of the mean log RTF over passes, computed exactly; with one, its batches
    resampled (seeded). None with fewer than two batches: one value has no spread to estimate."""
    if len(processing_s) < 2:
        return None
    passes = np.zeros(len(processing_s)) if passes is None else np.asarray(passes)
    per_pass = pass_rtfs(processing_s, audio_s, passes)
    if per_pass.size > 1:
        logs = np.log(1 / per_pass)
        half = _t_quantile(0.5 + confidence / 2, logs.size - 1) * logs.std(ddof=1) / np.sqrt(logs.size)
        return float(np.exp(logs.mean() - half)), float(np.exp(logs.mean() + half))
    rtfx = 1 / rtf_samples(processing_s, audio_s, passes, resamples, np.random.default_rng(seed))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(rtfx, [tail, 100 - tail])
    return float(low), float(high)


def tells_apart(spread: float, passes: int, confidence: float = 0.95) -> float:
    """The smallest speed ratio, as a fraction over 1, that two runs of `passes` passes each
    with this pass spread (pass_spread) are told apart by: the half-width of the Welch t
    interval of their log ratio (equal spreads: 2(n-1) degrees of freedom). What a folder of
    such runs can tell, before it is measured."""
    from statistics import NormalDist

    df = 2 * (passes - 1)
    quantile = _t_quantile(0.5 + confidence / 2, df) if df else NormalDist().inv_cdf(0.5 + confidence / 2)
    return float(np.exp(quantile * spread * np.sqrt(2 / passes)) - 1)


RESOLUTION_SPREADS = (0.01, 0.03, 0.05, 0.065, 0.10, 0.15)  # pass spreads docs/statistics.md tabulates
RESOLUTION_PASSES = (2, 3, 5, 7, 10)


def resolution_table() -> str:
    """docs/statistics.md's table: the smallest ratio two runs tell apart (tells_apart), per pass
    spread and passes per run."""
    head = "| pass spread | " + " | ".join(f"{n} passes" for n in RESOLUTION_PASSES) + " |"
    lines = [head, "|---|" + "---|" * len(RESOLUTION_PASSES)]
    for spread in RESOLUTION_SPREADS:
        cells = " | ".join(f"{100 * tells_apart(spread, n):.1f}%" for n in RESOLUTION_PASSES)
        lines.append(f"| {100 * spread:g}% | {cells} |")
    return "\n".join(lines) + "\n"


def _t_quantile(p: float, df: int) -> float:
    """Student's t quantile for p > 0.5 (numpy has no t inverse, and scipy is not a dependency):
    the density integrated by the trapezoid rule on a fine grid, then read where it reaches p."""
    from math import lgamma, pi

    x = np.linspace(0, 200, 400_001)
    log_norm = lgamma((df + 1) / 2) - lgamma(df / 2) - 0.5 * np.log(df * pi)
    density = np.exp(log_norm - (df + 1) / 2 * np.log1p(x * x / df))
    cdf = 0.5 + np.concatenate([[0], np.cumsum((density[1:] + density[:-1]) / 2 * np.diff(x))])
    return float(np.interp(p, cdf, x))


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
