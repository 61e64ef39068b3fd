"""Release against release: the same measurements in two sets of runs, each cell marked
better, worse or noise."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.analysis.runs import Run, joint_rtf_samples, matching, rtf_point, wer_difference
from bench.errors import BenchError
from bench.pipeline.cells import peak_memory_bytes
from bench.stats import SPEED_DRAWS


def _rtfx_mark(base: Run, cand: Run, rng) -> tuple[float, str]:
    """RTFx change and whether it is beyond noise: the 95% interval of the RTF ratio over the
    passes of the two releases' runs (measured apart), the gate's estimator (bench.analysis.runs)."""
    cand_rtf, base_rtf = joint_rtf_samples([cand.batches, base.batches], SPEED_DRAWS, rng)
    low, high = np.percentile(cand_rtf / base_rtf, [2.5, 97.5])
    delta = rtf_point(base.batches) / rtf_point(cand.batches) - 1  # RTFx change
    if low > 1:
        return delta, "worse"
    if high < 1:
        return delta, "better"
    return delta, "noise"


def _wer_mark(base: Run, cand: Run, rng) -> tuple[float | None, str]:
    """WER change with a paired bootstrap over the utterances both runs scored."""
    diff = wer_difference(base, cand, rng)
    if diff is None:
        return None, "n/a"
    delta = cand.summary.wer - base.summary.wer
    return delta, "noise" if diff.within_noise else "worse" if diff.low > 0 else "better"


def _relative_mark(base, cand, tolerance=0.05, lower_is_better=True) -> tuple[float | None, str]:
    if base is None or cand is None or base == 0:
        return None, "n/a"
    delta = cand / base - 1
    if abs(delta) <= tolerance:
        return delta, "noise"
    return delta, "better" if (delta < 0) == lower_is_better else "worse"


def release_frame(baseline: list[Run], candidate: list[Run], seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    by_key = {key: r for r in baseline for key in reversed(r.keys)}  # its own key wins over the legacy one
    rows = []
    for cand in candidate:
        base = matching(cand, by_key)
        if base is None:
            continue
        rtfx_delta, rtfx_mark = _rtfx_mark(base, cand, rng)
        wer_delta, wer_mark = _wer_mark(base, cand, rng)
        p50_delta, p50_mark = _relative_mark(base.summary.latency_p50, cand.summary.latency_p50)
        mem_delta, mem_mark = _relative_mark(peak_memory_bytes(base.summary), peak_memory_bytes(cand.summary))
        rows.append(
            {
                "engine": cand.summary.engine,
                "dataset": cand.summary.dataset.name,
                "batch": cand.summary.batch_size,
                "RTFx base": base.summary.rtfx,
                "RTFx cand": cand.summary.rtfx,
                "RTFx Δ%": 100 * rtfx_delta,
                "RTFx": rtfx_mark,
                "WER base": base.summary.wer,
                "WER cand": cand.summary.wer,
                "WER Δ points": None if wer_delta is None else 100 * wer_delta,  # percentage points
                "WER": wer_mark,
                "p50 Δ%": None if p50_delta is None else 100 * p50_delta,
                "p50": p50_mark,
                "memory Δ%": None if mem_delta is None else 100 * mem_delta,
                "memory": mem_mark,
            }
        )
    if not rows:
        raise BenchError("no candidate run matches a baseline run (same engine, patches, model, dtype, batch, data)")
    return pd.DataFrame(rows)
