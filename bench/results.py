"""measurements -> result rows and the run folder (summary.json, Parquet tables)."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

import numpy as np
import pandas as pd

from bench.data import Utterance
from bench.measure import Measurement
from bench.stats import percentiles, ratio_ci
from bench.wer import corpus_errors, utterance_errors

RANDOM_WER_NOTE = "not applicable: random weights emit random tokens (length-matched decoding)"


def utterance_rows(utterances: list[Utterance], m: Measurement, language: str, score: bool) -> pd.DataFrame:
    failures = {f.id: f.reason for f in m.failures}
    rows = []
    for u in utterances:
        t = m.transcripts.get(u.id)
        row = {
            "id": u.id,
            "duration_s": u.duration_s,
            "reference": u.reference,
            "hypothesis": t.text if t else None,
            "n_tokens": t.n_tokens if t else None,
            "target_tokens": m.target_tokens.get(u.id) if m.target_tokens else None,
            "latency_s": m.latency_s.get(u.id),
            "status": "ok" if t else "failed",
            "error": failures.get(u.id),
        }
        if t and score:
            e = utterance_errors(u.reference, t.text, language)
            row |= {
                "reference_norm": e.reference_norm,
                "hypothesis_norm": e.hypothesis_norm,
                "substitutions": e.substitutions,
                "deletions": e.deletions,
                "insertions": e.insertions,
                "reference_words": e.reference_words,
            }
        rows.append(row)
    frame = pd.DataFrame(rows)
    for column in (
        "n_tokens",
        "target_tokens",
        "substitutions",
        "deletions",
        "insertions",
        "reference_words",
    ):
        if column in frame:
            frame[column] = frame[column].astype("Int64")
    return frame


def batch_rows(m: Measurement) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "repeat": b.repeat,
                "batch": b.index,
                "n_utterances": len(b.ids),
                "audio_s": b.audio_s,
                "processing_s": b.processing_s,
                "model_s": b.model_s,
                "n_tokens": b.n_tokens,
                "rtf": b.processing_s / b.audio_s,
                **{f"phase_{name}_s": seconds for name, seconds in b.phases.items()},
                **b.counts,
            }
            for b in m.batches
        ]
    )


def summarize(
    *,
    header: dict,
    utterances: list[Utterance],
    m: Measurement,
    rows: pd.DataFrame,
    batches: pd.DataFrame,
    score: bool,
    environment: dict,
) -> dict:
    ok = rows[rows.status == "ok"]
    first = batches[batches.repeat == 0] if len(batches) else batches
    audio_s = float(first.audio_s.sum()) if len(first) else 0.0
    per_repeat = batches.groupby("repeat").processing_s.sum().tolist() if len(batches) else []
    processing_s = statistics.median(per_repeat) if per_repeat else None
    rtf = processing_s / audio_s if processing_s and audio_s else None
    decode_column = "phase_decode_s" if "phase_decode_s" in batches else "model_s"
    decode_s = float(batches[decode_column].sum()) if len(batches) else 0.0
    ci = ratio_ci(batches.processing_s.to_numpy(), batches.audio_s.to_numpy()) if len(batches) else None
    latency = percentiles(ok.latency_s.dropna())

    wer, wer_details = None, None
    if score and len(ok):
        from bench.wer import UtteranceErrors

        corpus = corpus_errors(
            [
                UtteranceErrors(
                    r.reference_norm,
                    r.hypothesis_norm,
                    r.substitutions,
                    r.deletions,
                    r.insertions,
                    r.reference_words,
                )
                for r in ok.itertuples()
            ]
        )
        wer = corpus.wer
        wer_details = {
            "substitutions": corpus.substitutions,
            "deletions": corpus.deletions,
            "insertions": corpus.insertions,
            "reference_words": corpus.reference_words,
            "n_empty_references": corpus.n_empty_references,
        }
    n_empty_raw = int(sum(1 for u in utterances if not u.reference.strip()))
    return {
        **header,
        "n_utterances": len(utterances),
        "n_failed": len(rows) - len(ok),
        "audio_seconds": audio_s,
        "processing_seconds": processing_s,
        "model_seconds": float(first.model_s.sum()) if len(first) else None,
        "rtf": rtf,
        "rtfx": 1 / rtf if rtf else None,
        "rtfx_ci": list(ci) if ci else None,
        "rtfx_ci_method": "95% bootstrap over timed batches (all repeats), 2000 resamples",
        "repeat_processing_seconds": per_repeat,
        "load_seconds": m.load_s,
        "cold_start_seconds": m.cold_start_s,
        "cold_start_counted": m.cold_start_counted,
        "latency_p50": latency["p50"],
        "latency_p90": latency["p90"],
        "latency_p99": latency["p99"],
        "n_tokens": int(batches.n_tokens.sum()) if len(batches) else 0,
        "decode_tokens_per_s": float(batches.n_tokens.sum()) / decode_s if decode_s else None,
        # decode steps (one token per row each) and their mean time, where the engine counts them
        "decode_steps": int(batches.decode_steps.sum()) if "decode_steps" in batches else None,
        "decode_step_seconds": (
            decode_s / float(batches.decode_steps.sum())
            if "decode_steps" in batches and batches.decode_steps.sum()
            else None
        ),
        "decode_phase": decode_column.removeprefix("phase_").removesuffix("_s"),
        "peak_gpu_memory_bytes": m.peak_memory_bytes,
        "wer": wer,
        "wer_details": wer_details,
        "wer_note": None if score else RANDOM_WER_NOTE,
        "n_empty_references": n_empty_raw,
        "environment": environment,
    }


def _atomic_write(path: Path, write) -> None:
    """Write to a temporary sibling then rename: a kill never leaves half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def write_json(path: Path, data: dict) -> None:
    _atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2, default=_json_default) + "\n"))


def write_parquet(path: Path, frame: pd.DataFrame) -> None:
    _atomic_write(path, lambda p: frame.to_parquet(p, index=False))


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
