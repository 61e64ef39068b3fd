"""config -> utterances: the only place datasets are read."""

from __future__ import annotations

import os

from bench.config import DatasetConfig
from bench.data.utterance import Failure, Utterance


def dataset_name(dataset: DatasetConfig) -> str:
    """The name a run reports its dataset by. A `dataset.path=` override keeps the name of the
    dataset it was made on (`sample`, by default) though it points at other data, so then the
    name comes from the path: a folder's name, or a Hub id as it is. A name without a YAML of
    its own under conf/dataset/ was given on purpose and is kept."""
    from omegaconf import OmegaConf

    from bench.config import CONF_DIR

    yaml = CONF_DIR / "dataset" / f"{dataset.name}.yaml"
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
