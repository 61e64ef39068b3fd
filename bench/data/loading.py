"""config -> utterances: the only place datasets are read."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.config import DatasetConfig
from bench.data.audio import SAMPLE_RATE


@dataclass
class Utterance:
    id: str
    audio: np.ndarray  # 16 kHz mono float32
    reference: str

    @property
    def duration_s(self) -> float:
        return len(self.audio) / SAMPLE_RATE


def load_utterances(dataset: DatasetConfig, limit: int | None = None, progress: bool = True) -> list[Utterance]:
    if dataset.source == "synthetic":
        from bench.data.synthetic import synthetic_utterances

        utterances = synthetic_utterances(dataset, limit)
    elif dataset.source == "hub":
        from bench.data.hub import hub_utterances

        utterances = hub_utterances(dataset, limit, progress)
    else:
        from bench.errors import BenchError

        raise BenchError(f"dataset.source={dataset.source!r}: use hub or synthetic")
    if dataset.sort_by_duration:
        utterances.sort(key=lambda u: (-len(u.audio), u.id))
    return utterances
