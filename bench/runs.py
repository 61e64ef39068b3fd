"""Reading run folders back: what bench.report and bench.gate start from."""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from bench import stats
from bench.errors import BenchError


@dataclass
class Run:
    path: Path
    summary: dict

    # read once: a report compares one baseline run with many (callers only read these)
    @cached_property
    def batches(self) -> pd.DataFrame:
        return pd.read_parquet(self.path / "batches.parquet")

    @cached_property
    def utterances(self) -> pd.DataFrame:
        return pd.read_parquet(self.path / "utterances.parquet")

    @property
    def hardware(self) -> str:
        return self.summary["environment"]["hardware"]

    @property
    def dataset_key(self) -> tuple:
        d = self.summary["dataset"]
        return (d["name"], d.get("config"), d["split"], d.get("limit"), self.summary["n_utterances"])

    @property
    def key(self) -> tuple:
        """What makes two runs "the same measurement" (engine, settings, data)."""
        s = self.summary
        return (
            s["engine"],
            ",".join(s["patches"]),
            s["model"],
            s["weights"],
            s["scale"],
            s["dtype"],
            s["batch_size"],
            *self.dataset_key,
        )


def load_runs(paths: list[str]) -> list[Run]:
    """Run folders (with their paired/ partners), parent folders (searched for summary.json) or globs of either."""
    found: list[Path] = []
    for pattern in paths:
        matches = glob.glob(pattern) or [pattern]
        for match in map(Path, matches):
            if match.is_file() and match.name == "summary.json":
                found.append(match.parent)
            elif (match / "summary.json").is_file():
                # A run.paired_with run keeps its partners' folders under paired/<engine>/.
                found += [match, *sorted(p.parent for p in match.glob("paired/*/summary.json"))]
            elif match.is_dir():
                found += sorted(p.parent for p in match.rglob("summary.json"))
    if not found:
        raise BenchError(f"no run folders (with a summary.json) under: {' '.join(paths)}")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return [Run(p, json.loads((p / "summary.json").read_text())) for p in unique]


def rtf_samples(
    batches: pd.DataFrame, resamples: int, rng: np.random.Generator, picks: list[np.ndarray] | None = None
) -> np.ndarray:
    """Bootstrap distribution of a run's RTF (bench.stats.rtf_samples over its batches; a
    frame without a repeat column, such as an old baseline's, counts as one pass)."""
    return stats.rtf_samples(batches.processing_s, batches.audio_s, _passes(batches), resamples, rng, picks)


def _passes(batches: pd.DataFrame) -> np.ndarray:
    return batches["repeat"].to_numpy() if "repeat" in batches else np.zeros(len(batches), dtype=int)


def rtf_ratio_samples(
    numerator: pd.DataFrame, denominator: pd.DataFrame, resamples: int, rng: np.random.Generator, paired: bool = False
) -> np.ndarray:
    """Bootstrap distribution of RTF(numerator) / RTF(denominator): each run's batches
    resampled on their own or, with `paired` (the same batches timed in turns, in the same
    passes), jointly."""
    picks = None
    if paired:
        if not np.array_equal(_passes(numerator), _passes(denominator)):
            raise ValueError("paired runs must hold the same batches in the same passes")
        picks = stats.pass_picks(_passes(numerator), resamples, rng)
    return rtf_samples(numerator, resamples, rng, picks) / rtf_samples(denominator, resamples, rng, picks)
