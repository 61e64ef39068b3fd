"""Generated clips for pure speed runs: given durations, realistic reference lengths.

Speed depends on shapes (audio length, tokens decoded), not on what is said, so the
audio is noise shaped like speech (a syllable-rate envelope) and the reference is drawn
from common words at a read-speech rate. Seeded, so two runs see the same clips.
"""

from __future__ import annotations

import numpy as np

from bench.config import DatasetConfig
from bench.data.audio import SAMPLE_RATE
from bench.data.loading import Utterance
from bench.errors import BenchError

WORDS = (
    "the of and to a in that it was he for on are with as his they at be this from have or by one had "
    "not but what all were when we there can an your which their said if do will each about how up out "
    "them then she many some so these would other into has more her two like him see time could no make "
    "than first been its who now people my made over did down only way find use may water long little "
    "very after words called just where most know get through back much before go good new write our "
    "used me man too any day same right look think also around another came come work three word must "
    "because does part even place well such here take why things help put years different away again "
    "off went old number great tell men say small every found still between name should home big give "
    "air line set own under read last never us left end along while might next sound below saw something"
).split()


def synthetic_utterances(dataset: DatasetConfig, limit: int | None) -> list[Utterance]:
    if not 0 < dataset.min_seconds <= dataset.max_seconds:
        raise BenchError(
            f"dataset {dataset.name}: need 0 < min_seconds <= max_seconds "
            f"(got {dataset.min_seconds}, {dataset.max_seconds})"
        )
    count = dataset.n_clips if limit is None else min(limit, dataset.n_clips)
    rng = np.random.default_rng(dataset.seed)
    utterances = []
    for index in range(count):
        seconds = float(rng.uniform(dataset.min_seconds, dataset.max_seconds))
        n_samples = int(round(seconds * SAMPLE_RATE))
        t = np.arange(n_samples) / SAMPLE_RATE
        envelope = 0.5 * (1 + np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 2 * np.pi)))
        audio = (0.1 * envelope * rng.standard_normal(n_samples)).astype(np.float32)
        n_words = max(1, round(seconds * dataset.words_per_second))
        reference = " ".join(rng.choice(WORDS, size=n_words))
        utterances.append(Utterance(id=f"synthetic-{index:05d}", audio=audio, reference=reference))
    return utterances
