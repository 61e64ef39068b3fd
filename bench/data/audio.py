"""Decoding to 16 kHz mono float32 with soundfile and soxr.

Done here rather than through `datasets`' Audio decoding, which in datasets 5 goes
through torchcodec, whose wheels need CUDA libraries; and openai-whisper's loader
shells out to ffmpeg. soundfile reads WAV/FLAC/OGG/MP3 from bytes with libsndfile.
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16_000


def to_mono_16k(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 2:  # soundfile gives (frames, channels)
        samples = samples.mean(axis=1)
    if sample_rate != SAMPLE_RATE:
        samples = soxr.resample(samples, sample_rate, SAMPLE_RATE, quality="HQ")
    return np.ascontiguousarray(samples, dtype=np.float32)


def decode_audio(data: bytes | None = None, path: str | None = None) -> np.ndarray:
    """Decode encoded audio given as bytes (preferred) or a file path."""
    source = io.BytesIO(data) if data is not None else path
    if source is None:
        raise ValueError("audio has neither bytes nor a path")
    samples, sample_rate = sf.read(source, dtype="float32", always_2d=False)
    return to_mono_16k(samples, sample_rate)
