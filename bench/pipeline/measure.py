"""engine + utterances -> raw timings. The timed region is ``engine.transcribe``.

Order of events: load (timed on its own), warm-up batches (the first of them is the
cold start, reported on its own, none counted), then ``repeats`` timed passes over every
batch. Audio was decoded before any of this; target token counts for length-matched
decoding are computed here, before the timed region, with the engine's own tokenizer.

A batch that runs out of GPU memory is halved and its halves retried; with
``run.on_error=skip`` a batch that fails otherwise is split until the utterance that fails
is alone, and only that one is recorded as failed. A resumed run (``prior``) skips the
batches its earlier sessions finished; ``on_batch`` is called after every batch so the
caller can save progress.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from tqdm import tqdm

from bench.config import RunConfig
from bench.data import Failure, Utterance
from bench.data.audio import SAMPLE_RATE
from bench.engines.base import Engine, Transcript, compile_seconds, compiled_graphs, recompile_limit_hits
from bench.errors import BenchError
from bench.host.energy import energy_counter
from bench.pipeline.clock import Clock, synchronize
from bench.pipeline.measurement import BatchRecord, Measurement

LONG_FORM_S = 30.0  # longer clips need several 30 s windows: long-form


def is_long_form(utterance: Utterance) -> bool:
    return len(utterance.audio) > LONG_FORM_S * SAMPLE_RATE


def make_batches(utterances: list[Utterance], batch_size: int) -> list[list[Utterance]]:
    """Consecutive batches of at most batch_size; short- and long-form clips never share one,
    so each batch's time belongs to one form and the summary can report them apart."""
    if batch_size < 1:
        raise BenchError(f"run.batch_size={batch_size}: must be at least 1")
    batches: list[list[Utterance]] = []
    for u in utterances:
        if batches and len(batches[-1]) < batch_size and is_long_form(batches[-1][0]) == is_long_form(u):
            batches[-1].append(u)
        else:
            batches.append([u])
    return batches


def measure(engine: Engine, utterances: list[Utterance], run: RunConfig) -> Measurement:
    return measure_side_by_side([engine], utterances, run)[0]


def _out_of_memory(err: Exception) -> bool:
    return isinstance(err, torch.OutOfMemoryError)


class _Session:
    """One pass of measure_side_by_side: the engines, the batches, and the calls.

    It keeps, per engine, the batch shapes (Engine.batch_shape) its calls have run at. A batch
    about to be timed at a shape none has run at (a clip dropped by on_error=skip, the halves of
    an out-of-memory back-off, a shape the plan could not foresee) runs once untimed first, so
    what that shape compiles or captures never falls inside a timed pass."""

    def __init__(self, engines: list[Engine], run: RunConfig, targets: list[dict[str, int] | None], energy):
        self.engines, self.run, self.targets, self.energy = engines, run, targets, energy
        self.label, self.bar = "+".join(e.engine_cfg.name for e in engines), None
        self.warm: list[set] = [set() for _ in engines]
        self.shape_warmups = [0] * len(engines)
        self.limit_hits = [0] * len(engines)
        self.compile_s = [0.0] * len(engines)  # in each engine's calls
        self.capture_s = [0.0] * len(engines)

    def stage(self, what: str, batches: int) -> None:
        """A progress bar per stage, the warm-up's apart: its batches compile and capture, and
        counted with the timed ones they would throw the bar's estimate of the time left."""
        if self.bar is not None:
            self.bar.close()
        # disable=None: tqdm draws only on a terminal, so a log redirected to a file gets no bars
        self.bar = tqdm(total=batches, desc=f"{self.label} {what}", unit="batch",
                        disable=None if self.run.progress and batches else True)  # fmt: skip

    def _shape(self, k: int, batch: list[Utterance]):
        return self.engines[k].batch_shape([len(u.audio) for u in batch])

    def _transcribe(self, k: int, batch: list[Utterance], clock: Clock) -> list[Transcript]:
        """The engine's call; its shape is warm afterwards, and a recompile limit it reached is counted."""
        targets, shape, hits = self.targets[k], self._shape(k, batch), recompile_limit_hits()
        compiling, capturing = compile_seconds(), self.engines[k].capture_seconds()
        try:
            out = self.engines[k].transcribe(
                [u.audio for u in batch], [targets[u.id] for u in batch] if targets else None, clock
            )
        finally:
            self.limit_hits[k] += recompile_limit_hits() - hits
            self.compile_s[k] += compile_seconds() - compiling
            self.capture_s[k] += self.engines[k].capture_seconds() - capturing
        if shape is not None:
            self.warm[k].add(shape)
        return out

    def is_warm(self, k: int, batch: list[Utterance]) -> bool:
        shape = self._shape(k, batch)
        return shape is None or shape in self.warm[k]

    def call(self, k: int, batch: list[Utterance], timed: bool = True) -> tuple[Clock, list[Transcript]]:
        if timed and not self.is_warm(k, batch):
            self._transcribe(k, batch, Clock(self.engines[k].device))  # untimed: its compiles and captures
            self.shape_warmups[k] += 1
        engine = self.engines[k]
        graphs, captures = compiled_graphs(), engine.graph_captures()
        with Clock(engine.device, self.energy if timed else None, host=timed) as clock:
            out = self._transcribe(k, batch, clock)
        # what was compiled or captured inside the clock: must stay 0 in a timed call
        clock.count("compiles", compiled_graphs() - graphs)
        clock.count("captures", engine.graph_captures() - captures)
        return clock, out

    def attempt(self, k: int, batch: list[Utterance], result: Measurement | None, where: str):
        """Run a batch, splitting it on out-of-memory (always) or on failure (on_error=skip).

        Yields (sub-batch, clock, transcripts) for what ran; records what failed in result
        (None: a warm-up call, whose failures the timed pass will meet and record).
        """
        try:
            yield (batch, *self.call(k, batch, timed=result is not None))
            return
        except Exception as err:
            error = err
        engine = self.engines[k]
        oom = _out_of_memory(error)
        reason = f"{type(error).__name__}: {error}".splitlines()[0]
        ids = ", ".join(u.id for u in batch[:4]) + (", ..." if len(batch) > 4 else "")
        if oom:
            engine.after_out_of_memory()
            self.warm[k].clear()  # the engine dropped its caches and graphs: every shape is new again
        elif self.run.on_error != "skip":
            raise BenchError(
                f"{engine.engine_cfg.name} failed on {where} (utterances {ids}): {reason}; "
                "run.on_error=skip records failed utterances and goes on"
            ) from error
        elif result is None:
            return  # a warm-up call: the timed pass meets this failure again and records it
        if len(batch) > 1:
            half = (len(batch) + 1) // 2
            if oom and result is not None:
                result.oom_splits.append({"where": where, "size": len(batch), "into": [half, len(batch) - half]})
            for part in (batch[:half], batch[half:]):
                yield from self.attempt(k, part, result, where)
            return
        if oom and self.run.on_error != "skip":
            raise BenchError(
                f"{engine.engine_cfg.name} ran out of GPU memory on utterance {batch[0].id} alone ({where}); "
                "use a smaller model or dtype, or run.on_error=skip to record it and go on"
            ) from error
        if result is not None:
            result.failures.append(Failure(batch[0].id, reason))


def measure_side_by_side(
    engines: list[Engine],
    utterances: list[Utterance],
    run: RunConfig,
    prior: list[Measurement] | None = None,
    on_batch: Callable[[list[Measurement]], None] | None = None,
) -> list[Measurement]:
    """Engines over the same batches, taking turns batch by batch (who goes first rotates).

    With one engine this is the plain measurement. With several, slow drift of the
    machine (clock speed, other load) falls on all of them alike, so the ratio of their
    speeds is a paired measurement: what the CI gate's same-run ratio relies on.
    """
    device = engines[0].device
    batches = make_batches(utterances, run.batch_size)
    warmup = batches[: max(0, run.warmup_batches)]
    done_before = sum(len(p.done) for p in prior) if prior else 0
    results, targets_per_engine, shape_warmups = [], [], []
    for k, engine in enumerate(engines):
        synchronize(device)
        start = time.perf_counter()
        engine.load()
        synchronize(device)
        load_s = time.perf_counter() - start
        engine.plan([[len(u.audio) for u in batch] for batch in batches])
        # run.warmup_batches=0 skips the plain warm-up, never this: a shape's compile is not timed
        shape_warmups.append(_shape_warmup(engine, batches, warmup))
        targets = {u.id: engine.count_target_tokens(u.reference) for u in utterances} if engine.length_matched else None
        targets_per_engine.append(targets)
        if prior:
            prior[k].resumed.append({"load_s": load_s, "cold_start_s": None, "batches_done_before": len(prior[k].done)})
            results.append(prior[k])
        else:
            results.append(
                Measurement(load_s=load_s, cold_start_s=None, cold_start_counted=False, target_tokens=targets)
            )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    counter = energy_counter(device)
    energy = None if isinstance(counter, str) else counter
    for result in results:
        result.energy_note = counter if isinstance(counter, str) else None
    session = _Session(engines, run, targets_per_engine, energy)
    # the bars start once the engines are loaded: their rates count batches, not model loading
    session.stage("warm-up (untimed: compiles, captures)", len(warmup) * len(engines) + sum(map(len, shape_warmups)))

    for i, batch in enumerate(warmup):
        for k in range(len(engines)):
            start = time.perf_counter()
            for _ in session.attempt(k, batch, None, f"warm-up batch {i}"):
                pass
            session.bar.update()
            results[k].warmup_s += time.perf_counter() - start
            if i == 0:
                _set_cold_start(results[k], time.perf_counter() - start, prior)
    for k in range(len(engines)):
        for i, batch in enumerate(shape_warmups[k]):
            start = time.perf_counter()
            for _ in session.attempt(k, batch, None, f"warm-up batch for shape {i}"):
                pass
            session.bar.update()
            results[k].warmup_s += time.perf_counter() - start
            if i == 0 and not warmup:  # no plain warm-up: this was the engine's first call
                _set_cold_start(results[k], time.perf_counter() - start, prior)
    if not prior:
        for k, result in enumerate(results):
            result.cold_start_counted = not warmup and not shape_warmups[k]  # the first timed batch is the cold one

    measured_before = [{tuple(d) for d in result.done} for result in results]
    session.stage("timed", run.repeats * len(batches) * len(engines) - done_before)
    for repeat in range(run.repeats):
        for index, batch in enumerate(batches):
            first = (index + repeat) % len(engines)
            for k in [*range(first, len(engines)), *range(first)]:
                if (repeat, index) in measured_before[k]:
                    continue  # measured by an earlier session of this run
                _timed_batch(session, k, results[k], repeat, index, batch)
                results[k].done.append([repeat, index])
                session.bar.update()
                if on_batch:
                    on_batch(results)
    session.bar.close()
    for k, result in enumerate(results):
        result.shape_warmups += len(shape_warmups[k]) + session.shape_warmups[k]
        result.recompile_limit_hits += session.limit_hits[k]
        result.compile_s += session.compile_s[k]
        result.capture_s += session.capture_s[k]
    if device.type == "cuda":
        for result in results:
            result.peak_memory_bytes = max(result.peak_memory_bytes or 0, torch.cuda.max_memory_allocated(device))
    elif len(engines) == 1:  # engines sharing a process share its peak: none is theirs alone
        results[0].peak_resident_bytes = peak_resident_bytes()
    return results


def peak_resident_bytes() -> int:
    """The most memory this process has held in RAM since it started (Linux counts in KiB)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _set_cold_start(result: Measurement, seconds: float, resumed: bool) -> None:
    if resumed:
        result.resumed[-1]["cold_start_s"] = seconds
    else:
        result.cold_start_s = seconds


def _shape_warmup(engine: Engine, batches, warmup) -> list[list[Utterance]]:
    """One batch of every shape the run will time that the warm-up batches do not cover:
    whatever an engine compiles or captures per shape happens here, not in a timed pass."""

    def shape(batch):
        return engine.batch_shape([len(u.audio) for u in batch])

    seen = {shape(b) for b in warmup}
    extra = []
    for batch in batches:
        if (key := shape(batch)) is not None and key not in seen:
            seen.add(key)
            extra.append(batch)
    return extra


def _timed_batch(session: _Session, k: int, result: Measurement, repeat: int, index: int, batch) -> None:
    failed = {f.id for f in result.failures}
    batch = [u for u in batch if u.id not in failed]
    if not batch:
        return
    for part, clock, transcripts in session.attempt(k, batch, result, f"batch {index} of repeat {repeat}"):
        if result.cold_start_s is None:
            result.cold_start_s = clock.wall_s
        result.batches.append(
            BatchRecord(
                repeat=repeat,
                index=index,
                ids=[u.id for u in part],
                audio_s=sum(u.duration_s for u in part),
                processing_s=clock.wall_s,
                model_s=clock.model_s,
                n_tokens=sum(t.n_tokens for t in transcripts),
                phases=dict(clock.phases),
                counts=dict(clock.counts),  # decode steps, and compiles and captures inside the clock
                long_form=is_long_form(part[0]),
                energy_j=clock.energy_j,
                host_use=clock.host_use,
            )
        )
        if repeat == 0:
            for u, t in zip(part, transcripts, strict=True):
                result.transcripts[u.id] = t
                result.latency_s[u.id] = clock.wall_s
