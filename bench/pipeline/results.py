"""measurements -> result rows and the run folder (summary.json, Parquet tables)."""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import asdict, is_dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench.data import Failure, Utterance
from bench.data.utterance import reference_warning
from bench.host.busy import host_load
from bench.host.energy import joules_per_audio_hour
from bench.pipeline.cells import cost_interval, cost_per_audio_hours
from bench.pipeline.measure import LONG_FORM_S, is_long_form
from bench.pipeline.measurement import Measurement
from bench.pipeline.record import BatchRow, Summary, batch_frame
from bench.stats import PASS_METHOD, percentiles, ratio_ci
from bench.wer import UtteranceErrors, corpus_errors, utterance_errors

RANDOM_WER_NOTE = "not applicable: random weights emit random tokens (length-matched decoding)"


def utterance_rows(
    utterances: list[Utterance], m: Measurement, language: str, score: bool, rejected: list[Failure] = ()
) -> pd.DataFrame:
    """One row per utterance of the dataset: transcribed, failed in the engine, or rejected as input."""
    failures = {f.id: f for f in [*rejected, *m.failures]}
    rows = []
    for u in utterances:
        t = m.transcripts.get(u.id)
        failure = failures.get(u.id)
        row = {
            "id": u.id,
            "duration_s": u.duration_s,
            "long_form": is_long_form(u),
            "reference": u.reference,
            "hypothesis": t.text if t else None,
            "n_tokens": t.n_tokens if t else None,
            "target_tokens": m.target_tokens.get(u.id) if m.target_tokens else None,
            "latency_s": m.latency_s.get(u.id),
            "status": "ok" if t else ("failed" if failure else "not measured"),
            "error": failure.reason if failure else None,
            "failed_at": failure.stage if failure else None,
            "warning": reference_warning(u, language),
        }
        if t and score:
            row |= asdict(utterance_errors(u.reference, t.text, language))  # its fields are the columns
        rows.append(row)
    for f in rejected:
        rows.append({"id": f.id, "status": "failed", "error": f.reason, "failed_at": f.stage})
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
    rows = [
        BatchRow(
            b.repeat,
            b.index,
            len(b.ids),
            b.audio_s,
            b.processing_s,
            b.model_s,
            b.n_tokens,
            b.long_form,
            b.phases,
            b.counts,
            b.energy_j,
            b.host_use,
        )
        for b in m.batches
    ]
    return batch_frame(rows)


def summarize(
    *,
    header: dict,
    utterances: list[Utterance],
    m: Measurement,
    rows: pd.DataFrame,
    batches: pd.DataFrame,
    score: bool,
    environment: dict,
    price: float | None = None,
) -> Summary:
    ok = rows[rows.status == "ok"]
    first = batches[batches.repeat == 0] if len(batches) else batches
    audio_s, processing_s, rtf, per_repeat = _speed(batches)
    decode_column = "phase_decode_s" if "phase_decode_s" in batches else "model_s"
    decode_s = float(batches[decode_column].sum()) if len(batches) else 0.0
    ci = ratio_ci(batches.processing_s, batches.audio_s, batches.repeat) if len(batches) else None
    latency = percentiles(ok.latency_s.dropna())
    energy = _energy_per_audio_hour(batches)
    wer, wer_details = corpus_wer(ok) if score else (None, None)
    by_form = {}
    for form, long_form in (("short", False), ("long", True)):
        in_form = batches[batches.long_form == long_form] if len(batches) else batches
        form_rows = rows[rows.long_form.eq(long_form)] if "long_form" in rows else rows.iloc[:0]
        if not len(form_rows):
            continue
        form_audio, form_processing, form_rtf, _ = _speed(in_form)
        form_wer, _ = corpus_wer(form_rows[form_rows.status == "ok"]) if score else (None, None)
        by_form[form] = {
            "n_utterances": len(form_rows),
            "audio_seconds": form_audio,
            "processing_seconds": form_processing,
            "rtf": form_rtf,
            "rtfx": 1 / form_rtf if form_rtf else None,
            "wer": form_wer,
        }
    failed = rows[rows.status != "ok"]
    n_empty_raw = int(sum(1 for u in utterances if not u.reference.strip()))
    warnings = rows.warning.dropna() if "warning" in rows else pd.Series(dtype=str)
    return Summary.from_dict(
        strict=True,
        data={
            **header,
            "n_utterances": len(rows),  # the rejected inputs included
            "n_failed": len(failed),
            "failures": {
                "input": int((failed.failed_at == "input").sum()) if len(failed) else 0,
                "engine": int((failed.failed_at == "engine").sum()) if len(failed) else 0,
                "reasons": failed.error.value_counts().head(10).to_dict() if len(failed) else {},
            },
            "out_of_memory_splits": m.oom_splits,
            # compiles and CUDA graph captures while a pass was timed: 0, or the timings include them
            "compiles_while_timed": int(batches.compiles.sum()) if "compiles" in batches else None,
            "captures_while_timed": int(batches.captures.sum()) if "captures" in batches else None,
            "recompile_limit_hits": m.recompile_limit_hits,
            "shape_warmup_batches": m.shape_warmups,
            "resumed": len(m.resumed),
            "resume_sessions": m.resumed,
            "by_form": by_form,
            "long_form_threshold_seconds": LONG_FORM_S,
            "audio_seconds": audio_s,
            "processing_seconds": processing_s,
            "model_seconds": float(first.model_s.sum()) if len(first) else None,
            "rtf": rtf,
            "rtfx": 1 / rtf if rtf else None,
            "rtfx_ci": list(ci) if ci else None,
            "rtfx_ci_method": PASS_METHOD,
            "repeat_processing_seconds": per_repeat,
            "load_seconds": m.load_s,
            "cold_start_seconds": m.cold_start_s,
            "cold_start_counted": m.cold_start_counted,
            "warmup_seconds": m.warmup_s,
            "compile_seconds": m.compile_s,
            "capture_seconds": m.capture_s,
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
            "peak_resident_memory_bytes": m.peak_resident_bytes,
            "energy_j_per_audio_hour": energy,
            "energy_note": None if energy is not None else _energy_note(m, batches),
            "host_load": host_load(batches),
            "gpu_hourly_price": price,
            "cost_per_1000_audio_hours": cost_per_audio_hours(1 / rtf if rtf else None, price),
            "cost_per_1000_audio_hours_ci": cost_interval(list(ci) if ci else None, price),
            "wer": wer,
            "wer_details": wer_details,
            "wer_note": None if score else RANDOM_WER_NOTE,
            "n_empty_references": n_empty_raw,
            "n_missing_references": int(sum(u.reference_missing for u in utterances)),
            "reference_warnings": warnings.value_counts().to_dict(),
            "environment": environment,
        },
    )


def _energy_per_audio_hour(batches: pd.DataFrame) -> float | None:
    """Board energy per hour of audio over every timed pass (energy and audio summed alike)."""
    if "energy_j" not in batches or not len(batches) or batches.energy_j.isna().any():
        return None
    return joules_per_audio_hour(float(batches.energy_j.sum()), float(batches.audio_s.sum()))


def _energy_note(m: Measurement, batches: pd.DataFrame) -> str:
    if m.energy_note:
        return m.energy_note
    return "not measured: no timed batch" if not len(batches) else "not measured: a timed batch has no energy reading"


def _speed(batches: pd.DataFrame) -> tuple[float, float | None, float | None, list[float]]:
    """Audio seconds (one pass), median processing seconds over repeats, RTF, per-repeat seconds."""
    if not len(batches):
        return 0.0, None, None, []
    audio_s = float(batches[batches.repeat == 0].audio_s.sum())
    per_repeat = batches.groupby("repeat").processing_s.sum().tolist()
    processing_s = statistics.median(per_repeat)
    return audio_s, processing_s, (processing_s / audio_s if processing_s and audio_s else None), per_repeat


def corpus_wer(ok: pd.DataFrame) -> tuple[float | None, dict | None]:
    """Corpus WER over the scored rows (their UtteranceErrors columns), with its error counts."""
    if not len(ok):
        return None, None
    corpus = corpus_errors(
        [
            UtteranceErrors(
                r.reference_norm, r.hypothesis_norm, r.substitutions, r.deletions, r.insertions, r.reference_words
            )
            for r in ok.itertuples()
        ]
    )
    return corpus.wer, {
        "substitutions": corpus.substitutions,
        "deletions": corpus.deletions,
        "insertions": corpus.insertions,
        "reference_words": corpus.reference_words,
        "n_empty_references": corpus.n_empty_references,
    }


def _atomic_write(path: Path, write) -> None:
    """Write to a temporary sibling then rename: a kill never leaves half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def write_json(path: Path, data: dict, indent: int | None = 2) -> None:
    _atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=indent, default=_json_default) + "\n"))


def write_parquet(path: Path, frame: pd.DataFrame) -> None:
    _atomic_write(path, lambda p: frame.to_parquet(p, index=False))


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if is_dataclass(value) and not isinstance(value, type):
        return vars(value)  # what asdict gives, without its deep copy of every list and dict
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
