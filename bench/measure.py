"""engine + utterances -> raw timings. The timed region is ``engine.transcribe``.

Order of events: load (timed on its own), warm-up batches (the first of them is the
cold start, reported on its own, none counted), then ``repeats`` timed passes over every
batch. Audio was decoded before any of this; target token counts for length-matched
decoding are computed here, before the timed region, with the engine's own tokenizer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from bench.clock import Clock, synchronize
from bench.config import RunConfig
from bench.data import Utterance
from bench.engines.base import Engine, Transcript


@dataclass
class BatchRecord:
    repeat: int
    index: int
    ids: list[str]
    audio_s: float
    processing_s: float
    model_s: float
    n_tokens: int
    phases: dict[str, float]
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class Failure:
    id: str
    reason: str


@dataclass
class Measurement:
    load_s: float
    cold_start_s: float | None
    cold_start_counted: bool  # no warm-up: the cold batch is also a timed batch
    batches: list[BatchRecord] = field(default_factory=list)
    transcripts: dict[str, Transcript] = field(default_factory=dict)  # from the first pass
    latency_s: dict[str, float] = field(default_factory=dict)  # its batch's time, first pass
    target_tokens: dict[str, int] | None = None
    failures: list[Failure] = field(default_factory=list)
    peak_memory_bytes: int | None = None


def make_batches(utterances: list[Utterance], batch_size: int) -> list[list[Utterance]]:
    if batch_size < 1:
        from bench.errors import BenchError

        raise BenchError(f"run.batch_size={batch_size}: must be at least 1")
    return [utterances[i : i + batch_size] for i in range(0, len(utterances), batch_size)]


def measure(engine: Engine, utterances: list[Utterance], run: RunConfig) -> Measurement:
    return measure_side_by_side([engine], utterances, run)[0]


def measure_side_by_side(engines: list[Engine], utterances: list[Utterance], run: RunConfig) -> list[Measurement]:
    """Engines over the same batches, taking turns batch by batch (who goes first rotates).

    With one engine this is the plain measurement. With several, slow drift of the
    machine (clock speed, other load) falls on all of them alike, so the ratio of their
    speeds is a paired measurement: what the CI gate's same-run ratio relies on.
    """
    device = engines[0].device
    results = []
    targets_by_engine = []
    for engine in engines:
        synchronize(device)
        start = time.perf_counter()
        engine.load()
        synchronize(device)
        load_s = time.perf_counter() - start
        targets = {u.id: engine.count_target_tokens(u.reference) for u in utterances} if engine.length_matched else None
        targets_by_engine.append(targets)
        results.append(Measurement(load_s=load_s, cold_start_s=None, cold_start_counted=False, target_tokens=targets))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    batches = make_batches(utterances, run.batch_size)
    warmup = batches[: max(0, run.warmup_batches)]
    steps = (len(warmup) + run.repeats * len(batches)) * len(engines)
    label = "+".join(e.engine_cfg.name for e in engines)
    bar = tqdm(total=steps, desc=label, unit="batch", disable=not run.progress)

    def call(k: int, batch: list[Utterance]) -> tuple[Clock, list[Transcript]]:
        targets = targets_by_engine[k]
        with Clock(device) as clock:
            out = engines[k].transcribe(
                [u.audio for u in batch], [targets[u.id] for u in batch] if targets else None, clock
            )
        bar.update()
        return clock, out

    for i, batch in enumerate(warmup):
        for k in range(len(engines)):
            clock, _ = call(k, batch)
            if i == 0:
                results[k].cold_start_s = clock.wall_s
    for result in results:
        result.cold_start_counted = not warmup

    failed: list[set[str]] = [set() for _ in engines]
    for repeat in range(run.repeats):
        for index, batch in enumerate(batches):
            first = (index + repeat) % len(engines)
            for k in [*range(first, len(engines)), *range(first)]:
                _timed_batch(call, k, results[k], failed[k], repeat, index, batch, run.on_error)
    bar.close()
    if device.type == "cuda":
        for result in results:
            result.peak_memory_bytes = torch.cuda.max_memory_allocated(device)
    return results


def _timed_batch(call, k, result: Measurement, failed: set[str], repeat, index, batch, on_error) -> None:
    batch = [u for u in batch if u.id not in failed]
    if not batch:
        return
    try:
        clock, transcripts = call(k, batch)
    except Exception as err:  # recorded per utterance; on_error=fail re-raises
        if on_error != "skip":
            raise
        reason = f"{type(err).__name__}: {err}".splitlines()[0]
        result.failures += [Failure(u.id, reason) for u in batch]
        failed.update(u.id for u in batch)
        return
    if result.cold_start_s is None:
        result.cold_start_s = clock.wall_s
    result.batches.append(
        BatchRecord(
            repeat=repeat,
            index=index,
            ids=[u.id for u in batch],
            audio_s=sum(u.duration_s for u in batch),
            processing_s=clock.wall_s,
            model_s=clock.model_s,
            n_tokens=sum(t.n_tokens for t in transcripts),
            phases=dict(clock.phases),
            counts=dict(clock.counts),
        )
    )
    if repeat == 0:
        for u, t in zip(batch, transcripts, strict=True):
            result.transcripts[u.id] = t
            result.latency_s[u.id] = clock.wall_s
