"""Any Hugging Face audio dataset (Hub id or local folder in the Hub's layout)."""

from __future__ import annotations

import itertools

from tqdm import tqdm

from bench.config import DatasetConfig
from bench.data.audio import decode_audio
from bench.data.loading import Utterance
from bench.errors import BenchError

OFFLINE_HINT = (
    "on a machine without Hub access, run the shipped dataset (dataset=sample) or the generated one "
    "(dataset=synthetic), or point dataset.path at a local copy"
)


def _open(dataset: DatasetConfig):
    import datasets

    try:
        ds = datasets.load_dataset(dataset.path, dataset.config, split=dataset.split, streaming=dataset.streaming)
    except (ConnectionError, FileNotFoundError) as err:
        raise BenchError(
            f"dataset {dataset.path!r} (config {dataset.config}, split {dataset.split}) could not be "
            f"loaded: {str(err).splitlines()[0]}; {OFFLINE_HINT}"
        ) from err
    except ValueError as err:  # e.g. an unknown split or config
        raise BenchError(f"dataset {dataset.path!r}: {str(err).splitlines()[0]}") from err
    columns = ds.column_names or list(ds.features or {})
    for column in (dataset.audio_column, dataset.text_column):
        if columns and column not in columns:
            raise BenchError(
                f"dataset {dataset.path!r} has no column {column!r} (it has: {', '.join(columns)}); "
                f"set dataset.audio_column / dataset.text_column"
            )
    # Keep the encoded bytes: decoding is ours (see bench.data.audio).
    return ds.cast_column(dataset.audio_column, datasets.Audio(decode=False))


def hub_utterances(dataset: DatasetConfig, limit: int | None, progress: bool) -> list[Utterance]:
    ds = _open(dataset)
    rows = itertools.islice(ds, limit) if limit is not None else ds
    total = limit if limit is not None else (len(ds) if hasattr(ds, "__len__") else None)
    utterances = []
    for index, row in enumerate(tqdm(rows, total=total, desc="decoding audio", disable=not progress)):
        audio = row[dataset.audio_column]
        uid = str(row[dataset.id_column]) if dataset.id_column else f"{dataset.split}-{index:06d}"
        utterances.append(
            Utterance(
                id=uid,
                audio=decode_audio(audio.get("bytes"), audio.get("path")),
                reference=row[dataset.text_column] or "",
            )
        )
    return utterances
