"""What a dataset becomes: decoded utterances, and the rows that could not be used."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.data.audio import SAMPLE_RATE


@dataclass
class Utterance:
    id: str
    audio: np.ndarray  # 16 kHz mono float32
    reference: str
    reference_missing: bool = False  # the dataset had no text: scored as an empty reference

    @property
    def duration_s(self) -> float:
        return len(self.audio) / SAMPLE_RATE


@dataclass
class Failure:
    """An utterance that produced no transcript, and why (bad input or an engine error)."""

    id: str
    reason: str
    stage: str = "engine"  # input (could not be used) | engine (failed when transcribed)


def audio_problem(audio: np.ndarray) -> str | None:
    """Why decoded audio cannot be transcribed meaningfully, or None. Silence is fine:
    it is valid input and an engine should answer it (with nothing, ideally)."""
    return samples_problem(audio.size, int(np.count_nonzero(~np.isfinite(audio))))


def samples_problem(samples: int, bad: int) -> str | None:
    """audio_problem from counts: the samples, and those of them that are NaN or infinite."""
    if samples == 0:
        return "zero-length audio (no samples)"
    if bad:
        return f"{bad} of {samples} samples are NaN or infinite"
    return None


def reference_warning(utterance: Utterance, language: str) -> str | None:
    """What is odd about a reference; the utterance is still scored (and counted in the summary)."""
    text = utterance.reference.strip()
    if utterance.reference_missing:
        return "no reference text in the dataset: scored as an empty reference"
    if not text:
        return "empty reference: every hypothesis word counts as an insertion"
    letters = [c for c in text if c.isalpha()]
    if language == "en" and letters and sum(c.isascii() for c in letters) < len(letters) / 2:
        return "reference is mostly in a non-Latin script, in an English run"
    return None
