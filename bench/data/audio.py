"""Decoding to 16 kHz mono float32 with soundfile and soxr.

Done here rather than through `datasets`' Audio decoding, which in datasets 5 goes
through torchcodec, whose wheels need CUDA libraries; and openai-whisper's loader
shells out to ffmpeg. soundfile reads WAV/FLAC/OGG/MP3 from bytes with libsndfile.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16_000
# the lowest sample rate a header may claim: below it no speech is carried, and a header that
# says 27 Hz makes a 93 KB WAV last half an hour (and decode to that many 16 kHz samples)
MIN_SAMPLE_RATE = 4_000


def to_mono_16k(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 2:  # soundfile gives (frames, channels)
        samples = samples.mean(axis=1)
    if sample_rate != SAMPLE_RATE:
        samples = soxr.resample(samples, sample_rate, SAMPLE_RATE, quality="HQ")
    return np.ascontiguousarray(samples, dtype=np.float32)


class AudioTooLong(ValueError):
    """The audio lasts longer than the caller allows (bench.serve's serve.max_audio_seconds)."""


class HeaderMismatch(ValueError):
    """The length the container's header gives is not what decodes (a cut-off file, a lying header)."""


# how far what decodes may stray from the length a header gives: an MP3's Xing count is an
# estimate, off by an encoder's padding (a frame or two), never by a second
HEADER_SLACK_S = 1.0
BLOCK_FRAMES = 1 << 16  # frames decoded at a time where a clip is decoded block by block


def decode_error(err: Exception) -> str:
    """A decoding error in a sentence: its first line, with libsndfile's name for the bytes it
    was given (an object's address) said as "the audio bytes"."""
    message = re.sub(r"<_io\.BytesIO object at 0x[0-9a-f]+>", "the audio bytes", str(err).split("\n")[0])
    return f"{type(err).__name__}: {message}"


def decode_audio(data: bytes | None = None, path: str | None = None, max_seconds: float | None = None) -> np.ndarray:
    """Decode encoded audio given as bytes (preferred) or a file path. With max_seconds, audio
    longer than that raises AudioTooLong without being decoded whole (see decoded_blocks)."""
    source = io.BytesIO(data) if data is not None else path
    if source is None:
        raise ValueError("audio has neither bytes nor a path")
    if max_seconds is None:
        samples, rate = sf.read(source, dtype="float32", always_2d=False)
        return to_mono_16k(samples, rate)
    return np.concatenate([np.zeros(0, np.float32), *decoded_blocks(source, max_seconds)])


def decoded_blocks(source, max_seconds: float) -> Iterator[np.ndarray]:
    """The audio in `source` (a path or a file object) as 16 kHz mono float32 blocks, in order,
    decoded a block at a time: together what decode_audio without a limit gives, to float32
    rounding (soxr's stream resampler matches its one-call resample). Audio longer than max_seconds raises
    AudioTooLong without being decoded whole: refused from the length the container's header
    gives, or, where the header gives none, once decoding reaches it (a small file of hours of
    silence must not decode to gigabytes of samples). A length the header gives is then held to
    what decodes (HeaderMismatch past HEADER_SLACK_S either way): a file cut off, or a header
    that understates its audio, never decodes past its claim. The checks at the end are made
    once every block has been given."""
    with sf.SoundFile(source) as f:
        rate, limit = f.samplerate, int(max_seconds * f.samplerate)
        if rate < MIN_SAMPLE_RATE:
            raise ValueError(f"the header says {rate} samples a second, under the {MIN_SAMPLE_RATE:,} speech needs")
        claimed = f.frames if 0 < f.frames < 2**62 else None  # libsndfile: 0 or huge if unknown
        if claimed is not None and claimed > limit:
            raise AudioTooLong(f"the audio lasts {claimed / rate:.1f} s, over the {max_seconds:g} s allowed")
        slack = int(HEADER_SLACK_S * rate)
        most = limit if claimed is None else min(limit, claimed + slack)  # never read past the claim
        resampler = None if rate == SAMPLE_RATE else soxr.ResampleStream(rate, SAMPLE_RATE, 1, "float32", "HQ")
        read = 0
        while read <= most:
            block = f.read(min(BLOCK_FRAMES, most + 1 - read), dtype="float32", always_2d=True)
            if not len(block):
                break
            read += len(block)
            mono = np.ascontiguousarray(block.mean(axis=1), dtype=np.float32)  # one channel: itself
            yield mono if resampler is None else resampler.resample_chunk(mono)
        if resampler is not None:
            yield resampler.resample_chunk(np.zeros(0, np.float32), last=True)
    if claimed is not None and abs(read - claimed) > slack:
        said = "more than" if read > claimed else "only"
        raise HeaderMismatch(
            f"the header says {claimed / rate:.1f} s of audio, but {said} {read / rate:.1f} s decode"
            + (" (the file is cut off?)" if read < claimed else "")
        )
    if read > limit:
        raise AudioTooLong(f"the audio lasts over {max_seconds:g} s, the most allowed")
