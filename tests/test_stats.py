import numpy as np
import pytest

from bench.engines.base import share_tokens, split_into_windows
from bench.stats import percentiles, ratio_ci


def test_ratio_ci_brackets_the_point_estimate_and_is_seeded():
    rng = np.random.default_rng(1)
    processing = 1.0 + 0.05 * rng.standard_normal(40)
    audio = np.full(40, 10.0)
    low, high = ratio_ci(processing, audio)
    point = audio.sum() / processing.sum()
    assert low < point < high
    assert high - low < 0.5  # 5% noise on 40 batches: a narrow interval around 10
    assert ratio_ci(processing, audio) == (low, high)


def test_ratio_ci_is_about_the_median_over_repeats_the_summary_reports():
    """Three timed passes of 10 batches (10 s of audio each), the first one disturbed (2 s a
    batch, the others 1 s): the summary's RTFx is 1 / median(0.2, 0.1, 0.1) = 10, while the
    pooled batches would say 300 / 40 = 7.5. The interval must hold 10, not 7.5."""
    rng = np.random.default_rng(2)
    processing = np.concatenate([np.full(10, 2.0), 1.0 + 0.02 * rng.standard_normal(20)])
    audio = np.full(30, 10.0)
    passes = np.repeat([0, 1, 2], 10)
    low, high = ratio_ci(processing, audio, passes)
    assert low < 10 < high and high - low < 0.5
    assert not low < 7.5 < high
    pooled_low, pooled_high = ratio_ci(processing, audio)  # no passes given: one pass
    assert pooled_low < 7.5 < pooled_high and not pooled_low < 10 < pooled_high


def test_ratio_ci_of_identical_batches_is_a_point():
    low, high = ratio_ci(np.full(5, 2.0), np.full(5, 10.0))
    assert low == pytest.approx(5.0) and high == pytest.approx(5.0)


def test_ratio_ci_needs_two_batches():
    assert ratio_ci(np.array([1.0]), np.array([2.0])) is None


def test_percentiles():
    p = percentiles(list(range(1, 101)))
    assert p["p50"] == pytest.approx(50.5) and p["p90"] == pytest.approx(90.1)
    assert percentiles([])["p99"] is None


def test_windows_and_token_shares():
    audio = np.zeros(16_000 * 70, dtype=np.float32)
    windows = split_into_windows(audio)
    assert [len(w) for w in windows] == [480_000, 480_000, 160_000]
    shares = share_tokens(100, [len(w) for w in windows])
    assert sum(shares) == 100 and shares == [43, 43, 14]
    assert share_tokens(7, [5]) == [7]
