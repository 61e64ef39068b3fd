"""Reading run folders back: what bench.report and bench.gate start from."""

from __future__ import annotations

import glob
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from bench import stats
from bench.errors import BenchError
from bench.pipeline.record import Summary, read_batches


@dataclass
class Run:
    path: Path
    summary: Summary

    # read once: a report compares one baseline run with many (callers only read these)
    @cached_property
    def batches(self) -> pd.DataFrame:
        return read_batches(self.path)

    @cached_property
    def utterances(self) -> pd.DataFrame:
        return pd.read_parquet(self.path / "utterances.parquet")

    @property
    def hardware(self) -> str:
        return self.summary.hardware

    @property
    def dataset_key(self) -> tuple:
        """What was measured: the fingerprint of its utterances (ids and lengths), or for a run
        written before runs had one, its dataset's name, config, split, limit and size."""
        if self.summary.dataset.fingerprint:
            return ("utterances", self.summary.dataset.fingerprint)
        return self.legacy_dataset_key

    @property
    def legacy_dataset_key(self) -> tuple:
        d = self.summary.dataset
        return (d.name, d.config, d.split, d.limit, self.summary.n_utterances)

    def _settings(self) -> tuple:
        s = self.summary
        return (s.engine, ",".join(s.patches), s.model, s.weights, s.scale, s.dtype, s.batch_size)

    @property
    def key(self) -> tuple:
        """What makes two runs "the same measurement" (engine, settings, data)."""
        return (*self._settings(), *self.dataset_key)

    @property
    def keys(self) -> list[tuple]:
        """Its key, and the one a baseline written before fingerprints knew it by."""
        return [self.key, (*self._settings(), *self.legacy_dataset_key)]


def matching(run: Run, by_key: dict[tuple, object]):
    """What `by_key` holds for the same measurement as `run` (by its key, or by the legacy key an
    older baseline or run folder knew it by), or None."""
    return next((by_key[key] for key in run.keys if key in by_key), None)


KEY_FIELDS = ("engine", "patches", "model", "weights", "scale", "dtype", "batch size")  # Run._settings, in order


def _pass_audio(repeat, audio_s) -> float:
    """Audio seconds one pass of a run's batches transcribed (its first pass)."""
    repeat, audio_s = list(repeat), list(audio_s)
    first = min(repeat, default=0)
    return float(sum(a for a, r in zip(audio_s, repeat, strict=True) if r == first))


def closest_miss(run: Run, entries: list[dict]) -> str | None:
    """Why a run matches none of a baseline's runs: the fields in which the baseline run closest
    to it (fewest fields apart) differs, each with both values."""
    if not entries:
        return None
    settings = run.key[: len(KEY_FIELDS)]
    batches = run.batches
    audio = _pass_audio(batches["repeat"] if "repeat" in batches else [0] * len(batches), batches.audio_s)

    def differences(entry: dict) -> list[str]:
        key, theirs = entry["key"], entry["batches"]
        out = [f"{name} {mine!r} here, {base!r} in the baseline"
               for name, mine, base in zip(KEY_FIELDS, settings, key, strict=False) if mine != base]  # fmt: skip
        if list(run.key[len(KEY_FIELDS) :]) != list(key[len(KEY_FIELDS) :]):
            out.append(
                f"the utterances (dataset fingerprint): {run.summary.n_utterances} utterances, {audio:.1f} s of "
                f"audio here, {_pass_audio(theirs['repeat'], theirs['audio_s']):.1f} s in the baseline (another "
                "run.limit, dataset or clips)"
            )
        return out

    closest = min((differences(e) for e in entries), key=len)
    where = f"{run.summary.engine} b{run.summary.batch_size} at {run.path}"
    return f"{where}: differs from the closest baseline run in " + "; ".join(closest)


@dataclass(frozen=True)
class WerDifference:
    """WER(b) - WER(a) over the utterances both runs scored, with its paired 95% bootstrap
    interval; within noise when the interval holds 0."""

    delta: float
    low: float
    high: float
    n_common: int

    @property
    def within_noise(self) -> bool:
        return self.low <= 0 <= self.high

    def cell(self) -> str:
        return f"{100 * self.delta:+.1f} points, 95% interval [{100 * self.low:+.1f}, {100 * self.high:+.1f}]"


def _scored(run: Run) -> pd.DataFrame:
    rows = run.utterances
    rows = rows[rows.status == "ok"] if "status" in rows else rows
    return rows.set_index("id")


def _errors(rows: pd.DataFrame) -> pd.Series:
    """Word errors per utterance: substitutions, deletions and insertions."""
    return rows.substitutions + rows.deletions + rows.insertions


def wer_difference(a: Run, b: Run, rng: np.random.Generator) -> WerDifference | None:
    """How much higher b's WER is than a's on the utterances both scored, with the paired
    bootstrap's interval (bench.stats.paired_rate_difference_ci); None when either has no WER or
    they share no scored utterance."""
    if a.summary.wer is None or b.summary.wer is None:
        return None
    rows_a, rows_b = _scored(a), _scored(b)
    common = rows_a.index.intersection(rows_b.index)
    if common.empty:
        return None

    def errors(rows):
        return _errors(rows).loc[common].to_numpy(float)

    words = rows_a.reference_words.loc[common].to_numpy(float)
    low, high = stats.paired_rate_difference_ci(errors(rows_a), errors(rows_b), words, stats.RESAMPLES, rng)
    delta = (errors(rows_b).sum() - errors(rows_a).sum()) / max(words.sum(), 1)
    return WerDifference(float(delta), low, high, len(common))


def wer_interval(run: Run, rng: np.random.Generator) -> tuple[float, float] | None:
    """The run's WER 95% bootstrap interval over its scored utterances (None without a WER)."""
    if run.summary.wer is None:
        return None
    rows = _scored(run)
    return stats.rate_ci(_errors(rows).to_numpy(float), rows.reference_words.to_numpy(float), stats.RESAMPLES, rng)


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
    return [Run(p, Summary.read(p)) for p in unique]


def rtf_point(batches: pd.DataFrame) -> float:
    """The run's RTF from its batches: median over passes of sum/sum (bench.stats.rtf_point)."""
    return stats.rtf_point(batches.processing_s, batches.audio_s, _passes(batches))


def rtf_samples(
    batches: pd.DataFrame, resamples: int, rng: np.random.Generator, picks: list[np.ndarray] | None = None
) -> np.ndarray:
    """Draws of a run's RTF for its interval (bench.stats.rtf_samples over its batches; a
    frame without a repeat column, such as an old baseline's, counts as one pass)."""
    return stats.rtf_samples(batches.processing_s, batches.audio_s, _passes(batches), resamples, rng, picks)


def _passes(batches: pd.DataFrame) -> np.ndarray:
    return batches["repeat"].to_numpy() if "repeat" in batches else np.zeros(len(batches), dtype=int)


def _pass_rtfs(batches: pd.DataFrame) -> np.ndarray:
    return stats.pass_rtfs(batches.processing_s, batches.audio_s, _passes(batches))


def _batch_sequence(batches: pd.DataFrame) -> tuple:
    return tuple(np.round(batches.audio_s.to_numpy(), 6))


def joint_rtf_samples(
    frames: list[pd.DataFrame], resamples: int, rng: np.random.Generator, in_turns: bool = False
) -> list[np.ndarray]:
    """Draws of several runs' RTFs (bench.stats.PASS_METHOD). Runs of two passes or more timed
    in turns (in_turns: one run.paired_with measurement, pass i of each at the same time) are
    drawn jointly over their passes (the paired t), so drift that slowed them alike cancels in
    their ratio; runs measured apart are drawn apart (their ratio's interval is then that of two
    independent t draws). Runs of one pass over the same batches share one draw of batch
    positions, so their ratio is about timing, not about which clips a draw picked."""
    pass_counts = {len(np.unique(_passes(f))) for f in frames}
    if in_turns and len(pass_counts) == 1 and pass_counts != {1}:
        per_pass = np.stack([_pass_rtfs(f) for f in frames], axis=1)
        with np.errstate(over="ignore"):  # as stats.rtf_samples: a draw past float range is +inf, far in the tail
            draws = np.exp(stats.t_draws(np.log(per_pass), resamples, rng))
        return [draws[:, i] for i in range(len(frames))]
    if pass_counts == {1} and len({_batch_sequence(f) for f in frames}) == 1:
        draw = rng.integers(0, len(frames[0]), size=(resamples, len(frames[0])))
        return [rtf_samples(f, resamples, rng, stats.shared_picks(_passes(f), draw)) for f in frames]
    return [rtf_samples(f, resamples, rng) for f in frames]


def measured_in_turns(a: Run, b: Run) -> bool:
    """Whether two runs come from one run.paired_with measurement (batches timed in turns)."""
    return a.path / "paired" / b.summary.engine == b.path or b.path / "paired" / a.summary.engine == a.path


def speed_ratio(a: Run, b: Run, seed: int = 0) -> tuple[float, float, float]:
    """How many times faster run a is than run b (RTF of b over RTF of a): the point and its 95%
    interval (joint_rtf_samples: over passes, jointly when the two were timed in turns). The one
    estimator of a speed ratio between two runs wherever bench words one: the verdict, the
    recommendation, a reference folder's ratios."""
    frames, in_turns = [b.batches, a.batches], measured_in_turns(a, b)
    b_rtf, a_rtf = joint_rtf_samples(frames, stats.SPEED_DRAWS, np.random.default_rng(seed), in_turns)
    with np.errstate(divide="ignore", over="ignore"):  # an infinite draw (above) gives a ratio of 0 or inf
        low, high = np.percentile(b_rtf / a_rtf, [2.5, 97.5])
    return b.summary.rtf / a.summary.rtf, float(low), float(high)
