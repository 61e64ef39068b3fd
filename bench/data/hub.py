"""Any Hugging Face audio dataset (Hub id or local folder in the Hub's layout)."""

from __future__ import annotations

import itertools
import os

from tqdm import tqdm

from bench.config import DatasetConfig
from bench.data.audio import decode_audio, decode_error
from bench.data.utterance import Failure, Utterance, audio_problem
from bench.errors import BenchError

OFFLINE_HINT = (
    "on a machine without Hub access, run the shipped dataset (dataset=sample) or the generated one "
    "(dataset=synthetic), or point dataset.path at a local copy"
)


def _local_path(path: str) -> bool:
    """A path meant as a local folder (absolute, or from . or ~), not a Hub id (org/name)."""
    return path.startswith(("/", ".", "~")) or os.path.isabs(path)


def _open(dataset: DatasetConfig):
    import datasets

    if _local_path(str(dataset.path)) and not os.path.exists(os.path.expanduser(str(dataset.path))):
        raise BenchError(
            f"dataset.path={dataset.path}: no such folder. A local dataset is a folder in the Hub's layout "
            "(an audiofolder, or Parquet files with audio and text columns); a Hub dataset is named by its "
            "id (org/name)"
        )
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
    if columns and dataset.id_column and dataset.id_column not in columns:
        raise BenchError(
            f"dataset {dataset.path!r} has no column {dataset.id_column!r} for utterance ids (it has: "
            f"{', '.join(columns)}); set dataset.id_column to one of them, or dataset.id_column=null to number "
            "the rows"
        )
    # Keep the encoded bytes: decoding is ours (see bench.data.audio).
    return ds.cast_column(dataset.audio_column, datasets.Audio(decode=False))


def hub_utterances(
    dataset: DatasetConfig, limit: int | None, progress: bool, rejected: list[Failure] | None
) -> list[Utterance]:
    ds = _open(dataset)
    rows = itertools.islice(ds, limit) if limit is not None else ds
    total = limit if limit is not None else (len(ds) if hasattr(ds, "__len__") else None)
    utterances = []
    for index, row in enumerate(tqdm(rows, total=total, desc="decoding audio", disable=None if progress else True)):
        uid = str(row[dataset.id_column]) if dataset.id_column else f"{dataset.split}-{index:06d}"
        reference = row[dataset.text_column]
        audio, problem = _decode(row[dataset.audio_column])
        if problem:
            if rejected is None:
                raise BenchError(
                    f"utterance {uid} of dataset {dataset.name}: {problem}; run.on_error=skip records it as "
                    "failed and goes on"
                )
            rejected.append(Failure(uid, problem, stage="input"))
            continue
        utterances.append(
            Utterance(id=uid, audio=audio, reference=str(reference or ""), reference_missing=reference is None)
        )
    return utterances


def _decode(audio: dict | None) -> tuple[object, str | None]:
    """(samples, None), or (None, why the audio cannot be used).

    The audio is the row's bytes. Its `path` is read only where a dataset holds no bytes and
    points at a file by its full path (a local audiofolder); in a Hub or Parquet row the
    path is the original file's name, and opening it would read whatever file of that name
    the working directory holds."""
    audio = audio or {}
    data, path = audio.get("bytes"), audio.get("path")
    if data is None and not (path and os.path.isabs(path)):
        return None, "no audio in the row"
    if data is not None and not data:
        return None, "no audio in the row (its audio bytes are empty)"
    try:
        samples = decode_audio(data, None if data is not None else path)
    except Exception as err:  # libsndfile's errors for corrupt, truncated or unknown formats, and I/O
        return None, f"undecodable audio ({decode_error(err)})"
    return samples, audio_problem(samples)
