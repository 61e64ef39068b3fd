"""A run's progress on disk, so a killed run loses little and can be resumed.

As batches finish, ``progress.json`` in the run folder is rewritten atomically (a
temporary file renamed over it) with everything measured so far: per engine, the batch
records, transcripts, failures, and which batches are done. ``run.resume=true`` on the
same folder reads it back and measures only the batches that are not done; it refuses a
folder whose progress came from another configuration or another dataset.

A save rewrites the whole run so far, so saving after every batch would make a long run
quadratic: at the end of LibriSpeech test-clean (2620 clips) x 3 repeats at batch 1 one
save (progress.json and the two tables) takes about a quarter second on a 2-core CPU, and
one after each of the 7860 batches would add up to a quarter hour. ``Saver`` therefore
saves after a batch only once the time since the last save is at least ``COST_FACTOR``
times what that save took (after every batch on short runs; saving stays under ~5% of a
long one), and once more when measuring ends, normally or by an error or Ctrl-C, with the
state as of the last finished batch. A run killed outright loses the batches since the
last save.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from itertools import islice
from pathlib import Path

from bench.data import Failure
from bench.engines.base import Transcript
from bench.errors import BenchError
from bench.pipeline.measurement import BatchRecord, Measurement
from bench.pipeline.results import write_json

FILE = "progress.json"
# settings that may differ between a run and its resumption
RESUMABLE_CHANGES = ("run.resume", "run.progress", "run.verbose")
COST_FACTOR = 20


def fingerprint(config: dict, utterance_ids: list[str], rejected_ids: list[str]) -> dict:
    """What must be equal for a resumed run to continue the same measurement."""
    config = json.loads(json.dumps(config))
    for dotted in RESUMABLE_CHANGES:
        group, key = dotted.split(".")
        config.get(group, {}).pop(key, None)
    return {"config": config, "utterance_ids": utterance_ids, "rejected_ids": rejected_ids}


def save(folder: Path, print_: dict, engines: list[str], measurements: list[Measurement]) -> None:
    # compact, and the dataclasses written as they are (no asdict copy): a save of a long run
    # took a fifth of the time of an indented dump of asdict's copy
    state = {"fingerprint": print_, "engines": engines, "measurements": measurements}
    write_json(folder / FILE, state, indent=None)


# What a Measurement gains batch by batch; each only grows, so cutting these back to their
# lengths at the end of a batch gives the measurement as it was then.
_GROWING = ("batches", "transcripts", "latency_s", "failures", "done", "oom_splits")


def _lengths(m: Measurement) -> dict:
    return {name: len(getattr(m, name)) for name in _GROWING} | {"cold_start_s": m.cold_start_s}


def _as_it_was(m: Measurement, lengths: dict) -> Measurement:
    cut = {
        name: dict(islice(value.items(), lengths[name])) if isinstance(value, dict) else value[: lengths[name]]
        for name in _GROWING
        if len(value := getattr(m, name)) != lengths[name]
    }
    return replace(m, **cut, cold_start_s=lengths["cold_start_s"])


class Saver:
    """The on_batch callback of a measurement: calls save(measurements) at a bounded cost
    (see the module's docstring). As a context manager, it saves what is left on exit."""

    def __init__(self, save: Callable[[list[Measurement]], None], clock: Callable[[], float] = time.monotonic):
        self.save, self.clock = save, clock
        self.measurements: list[Measurement] | None = None
        self.lengths: list[dict] = []
        self.unsaved = False
        self.due_at = float("-inf")

    def __call__(self, measurements: list[Measurement]) -> None:
        self.measurements, self.lengths, self.unsaved = measurements, [_lengths(m) for m in measurements], True
        if self.clock() >= self.due_at:
            self._save(measurements)

    def flush(self) -> None:
        """Save the state as of the last finished batch, if not saved yet."""
        if self.unsaved:
            self._save([_as_it_was(m, n) for m, n in zip(self.measurements, self.lengths, strict=True)])

    def _save(self, measurements: list[Measurement]) -> None:
        start = self.clock()
        self.save(measurements)
        end = self.clock()
        self.unsaved, self.due_at = False, end + COST_FACTOR * (end - start)

    def __enter__(self) -> Saver:
        return self

    def __exit__(self, *exc) -> None:
        self.flush()


def _measurement(data: dict) -> Measurement:
    m = Measurement(**data)
    m.batches = [BatchRecord(**b) for b in data["batches"]]
    m.transcripts = {uid: Transcript(**t) for uid, t in data["transcripts"].items()}
    m.failures = [Failure(**f) for f in data["failures"]]
    return m


def load(folder: Path, print_: dict, engines: list[str]) -> list[Measurement] | None:
    """The measurements of an earlier session of this run, or None if it finished no batch."""
    path = folder / FILE
    if not path.is_file():
        return None
    state = json.loads(path.read_text())
    if state["engines"] != engines:
        raise BenchError(
            f"cannot resume {folder}: it measured {', '.join(state['engines'])}, this run {', '.join(engines)}"
        )
    before = state["fingerprint"]
    if before["utterance_ids"] != print_["utterance_ids"] or before["rejected_ids"] != print_["rejected_ids"]:
        raise BenchError(f"cannot resume {folder}: the dataset gave other utterances than when the run started")
    changed = sorted(_differences(before["config"], print_["config"]))
    if changed:
        raise BenchError(
            f"cannot resume {folder}: these settings differ from the run's: {', '.join(changed)} "
            f"(only {', '.join(RESUMABLE_CHANGES)} may change)"
        )
    return [_measurement(m) for m in state["measurements"]]


def _differences(a, b, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = set(a) | set(b)
        return [d for k in keys for d in _differences(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [prefix.rstrip(".")]
