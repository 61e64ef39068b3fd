"""A run's progress on disk, so a killed run loses at most the batch in flight.

After every batch, ``progress.json`` in the run folder is rewritten atomically (a
temporary file renamed over it) with everything measured so far: per engine, the batch
records, transcripts, failures, and which batches are done. ``run.resume=true`` on the
same folder reads it back and measures only the batches that are not done; it refuses a
folder whose progress came from another configuration or another dataset.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from bench.data import Failure
from bench.engines.base import Transcript
from bench.errors import BenchError
from bench.measure import BatchRecord, Measurement
from bench.results import write_json

FILE = "progress.json"
# settings that may differ between a run and its resumption
RESUMABLE_CHANGES = ("run.resume", "run.progress")


def fingerprint(config: dict, utterance_ids: list[str], rejected_ids: list[str]) -> dict:
    """What must be equal for a resumed run to continue the same measurement."""
    config = json.loads(json.dumps(config))
    for dotted in RESUMABLE_CHANGES:
        group, key = dotted.split(".")
        config.get(group, {}).pop(key, None)
    return {"config": config, "utterance_ids": utterance_ids, "rejected_ids": rejected_ids}


def save(folder: Path, print_: dict, engines: list[str], measurements: list[Measurement]) -> None:
    state = {"fingerprint": print_, "engines": engines, "measurements": [asdict(m) for m in measurements]}
    write_json(folder / FILE, state)


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
