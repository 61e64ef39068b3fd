"""Synthetic run folders with chosen timings, for the report and gate tests."""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from bench.pipeline.record import DatasetRecord, Summary
from bench.pipeline.results import write_json
from bench.stats import ratio_ci


def make_run(
    folder: Path,
    engine: str = "voxtral_stock",
    seconds_per_batch: float = 1.0,
    noise: float = 0.02,
    n_batches: int = 20,
    audio_per_batch: float = 10.0,
    hardware: str = "NVIDIA H100 80GB HBM3 x1",
    dataset: str = "synthetic",
    batch_size: int = 1,
    errors: list[int] | None = None,
    weights: str = "pretrained",
    peak_gib: float = 10.0,
    seed: int = 0,
    repeats: int = 1,
    durations: list[float] | None = None,
    fingerprint: str | None = None,
    model: str | None = None,
    host_load: dict | None = None,
    pass_factors: list[float] | None = None,
    environment: dict | None = None,
) -> Path:
    """A run folder of `repeats` timed passes over n_batches batches. With `durations` the
    batches hold that much audio each and take time in proportion (plus a fixed cost per
    batch), so their RTFs differ as a dataset of short and long clips makes them."""
    rng = np.random.default_rng(seed)
    if durations is not None:
        n_batches = len(durations)
        audio = np.asarray(durations, float)
        base = seconds_per_batch * (0.3 + 0.7 * audio / audio.mean())
    else:
        audio, base = np.full(n_batches, audio_per_batch), np.full(n_batches, seconds_per_batch)
    factors = pass_factors or [1.0] * repeats
    processing = np.concatenate([f * base * (1 + noise * rng.standard_normal(n_batches)) for f in factors])
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "repeat": np.repeat(np.arange(repeats), n_batches),
            "batch": np.tile(np.arange(n_batches), repeats),
            "audio_s": np.tile(audio, repeats),
            "processing_s": processing,
        }
    ).to_parquet(folder / "batches.parquet")
    errors = errors if errors is not None else [1] * n_batches
    words = 10
    rows = pd.DataFrame(
        {
            "id": [f"u{i}" for i in range(n_batches)],
            "substitutions": errors,
            "deletions": 0,
            "insertions": 0,
            "reference_words": words,
            "status": "ok",
        }
    )
    rows.to_parquet(folder / "utterances.parquet")
    per_pass = processing.reshape(repeats, n_batches).sum(axis=1) / audio.sum()
    rtf = float(np.median(per_pass))
    wer = sum(errors) / (words * n_batches) if weights == "pretrained" else None
    summary = Summary(
        engine=engine,
        model=model or ("voxtral_mini_3b" if engine.startswith("voxtral") else "whisper_large_v3"),
        weights=weights,
        scale="full",
        dtype="bfloat16",
        batch_size=batch_size,
        dataset=DatasetRecord(name=dataset, split="test", fingerprint=fingerprint),
        repeats=repeats,
        n_utterances=n_batches,
        rtf=rtf,
        rtfx=1 / rtf,
        rtfx_ci=list(ratio_ci(processing, np.tile(audio, repeats), np.repeat(np.arange(repeats), n_batches))),
        repeat_processing_seconds=processing.reshape(repeats, n_batches).sum(axis=1).tolist(),
        wer=wer,
        wer_details={"substitutions": sum(errors), "deletions": 0, "insertions": 0} if wer is not None else None,
        latency_p50=seconds_per_batch,
        latency_p90=seconds_per_batch * 1.1,
        latency_p99=seconds_per_batch * 1.2,
        decode_tokens_per_s=100.0,
        peak_gpu_memory_bytes=int(peak_gib * 2**30),
        cold_start_seconds=1.0,
        environment={"hardware": hardware, "git_commit": "abc", **(environment or {})},
        host_load=host_load,
    )
    write_json(folder / "summary.json", summary.to_dict())
    return folder


def read(path: Path) -> dict:
    return json.loads(path.read_text())
