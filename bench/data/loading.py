"""config -> utterances: the only place datasets are read."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from bench.config import DatasetConfig
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
    if audio.size == 0:
        return "zero-length audio (no samples)"
    bad = int(np.count_nonzero(~np.isfinite(audio)))
    if bad:
        return f"{bad} of {audio.size} samples are NaN or infinite"
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


def dataset_name(dataset: DatasetConfig) -> str:
    """The name a run reports its dataset by. A `dataset.path=` override keeps the name of the
    dataset it was made on (`sample`, by default) though it points at other data, so then the
    name comes from the path: a folder's name, or a Hub id as it is. A name without a YAML of
    its own under conf/dataset/ was given on purpose and is kept."""
    from omegaconf import OmegaConf

    from bench.config import REPO_DIR

    yaml = REPO_DIR / "conf" / "dataset" / f"{dataset.name}.yaml"
    if dataset.source != "hub" or not yaml.exists():
        return dataset.name
    own_path = OmegaConf.load(yaml).get("path")
    if own_path is not None and str(OmegaConf.create({"p": own_path}).p) == dataset.path:
        return dataset.name
    path = dataset.path.rstrip("/")
    return os.path.basename(path) if os.path.isdir(path) else path


def utterances_fingerprint(utterances: list[Utterance], rejected: list[Failure] = ()) -> str:
    """What was measured, in 16 hex digits: every utterance's id and length in samples, and
    the ids of the rows rejected as input. Two runs with the same fingerprint measured the
    same clips, whatever their datasets are called."""
    import hashlib
    import json

    items = sorted([[u.id, len(u.audio)] for u in utterances] + [[f.id, None] for f in rejected], key=str)
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()[:16]


def load_utterances(
    dataset: DatasetConfig, limit: int | None = None, progress: bool = True, rejected: list[Failure] | None = None
) -> list[Utterance]:
    """Decoded, checked utterances. An unusable one goes to `rejected` with its reason when a
    list is given (run.on_error=skip), else it stops the load with an error that names it."""
    if dataset.source == "synthetic":
        from bench.data.synthetic import synthetic_utterances

        utterances = synthetic_utterances(dataset, limit)
    elif dataset.source == "hub":
        from bench.data.hub import hub_utterances

        utterances = hub_utterances(dataset, limit, progress, rejected)
    else:
        from bench.errors import BenchError

        raise BenchError(f"dataset.source={dataset.source!r}: use hub or synthetic")
    if dataset.sort_by_duration:
        utterances.sort(key=lambda u: (-len(u.audio), u.id))
    return utterances
