"""Dynamic batching: requests wait for each other (up to run.batch_size, or serve.max_wait_ms
after the first) and one engine thread transcribes them together.

A batch holds clips of one chunk count (30 s windows), as the offline path keeps short and
long clips apart: one long clip must not turn a batch of short ones into a long-form batch.
Clips over 30 s share a batch only up to Engine.long_form_rows (a Whisper engine: 1).

The engine runs in its own thread; the server's event loop only queues jobs and awaits their
futures, so a slow batch never blocks accepting or refusing requests. A batch runs as steps
(Engine.transcribe_steps: a long clip's 30 s windows one per step), and the thread takes turns
between starting the next ready batch and stepping each batch already running once, so a
short request waits for at most one window of each long clip in progress. A batch that fails is retried clip by clip,
so one bad clip fails only its own request.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import numpy as np

from bench.data.audio import SAMPLE_RATE
from bench.engines._engine_thread import engine_thread
from bench.engines.base import Engine, Transcript, chunk_count
from bench.pipeline.clock import Clock

END = object()  # the last item of a stream


@dataclass(eq=False)  # a job is itself: two requests with the same clip are two jobs
class Job:
    audio: np.ndarray
    loop: asyncio.AbstractEventLoop
    done: asyncio.Future  # the Transcript, or the exception that failed it
    stream: asyncio.Queue | None = None  # text deltas as decoded, then END
    arrived: float = field(default_factory=time.monotonic)
    streamed: str = ""  # the text sent to the client so far: a retry sends only what follows it
    released: bool = False  # its place in max_queue freed: answered, or its client hung up (its answer thrown away)

    @property
    def chunks(self) -> int:
        return chunk_count(len(self.audio))


@dataclass
class _Running:
    """A batch the engine has started: its jobs, the steps left, and its streaming listener."""

    jobs: list[Job]
    steps: Generator[None, None, list[Transcript]]
    deltas: _Deltas | None


class Batcher:
    def __init__(self, engine: Engine, batch_size: int, max_wait_s: float, max_queue: int, tokens_per_second: float,
                 on_batch: Callable[[list[Job]], None] | None = None):  # fmt: skip
        self.engine, self.batch_size, self.max_wait_s, self.max_queue = engine, batch_size, max_wait_s, max_queue
        self.tokens_per_second = tokens_per_second
        self.on_batch = on_batch or (lambda jobs: None)  # told each batch the engine starts
        self.pending = 0  # accepted and not yet answered
        self._queue: deque[Job] = deque()
        self._running: deque[_Running] = deque()
        self._new_turn = True  # whose turn is next: a new batch (when one is ready) or a running one
        self._cv = threading.Condition()
        self._closing = False
        # the engine's thread count and compile settings, as its warm-up ran with (_engine_thread)
        self._thread = engine_thread(self._run, "bench-engine")

    def start(self) -> None:
        self._thread.start()

    def submit(self, job: Job) -> bool:
        """Queue the job; False (refused) when max_queue requests are already waiting or running."""
        with self._cv:
            if self._closing or self.pending >= self.max_queue:
                return False
            self._queue.append(job)
            self.pending += 1
            self._cv.notify()
        return True

    def drop(self, job: Job) -> None:
        """The job's client has gone: out of the queue if it has not started (its batch never
        holds it), else its answer thrown away when its batch ends; either way its place in
        max_queue is freed now. Called on the server's event loop, which owns job.done."""
        with self._cv:
            if job.released:
                return
            job.released = True
            if job in self._queue:
                self._queue.remove(job)
            self.pending -= 1
        job.done.cancel()  # nothing waits for it now

    def close(self) -> None:
        """Finish every accepted job, then stop the engine thread."""
        with self._cv:
            self._closing = True
            self._cv.notify()
        self._thread.join()

    # -- the engine thread ------------------------------------------------------------------------
    def _ready(self) -> list[Job] | None:
        """The next batch if it may start: the oldest job and those of its chunk count after it,
        once run.batch_size of them wait, the oldest has waited max_wait, or the server closes."""
        if not self._queue:
            return None
        head = self._queue[0]
        most = (
            self.batch_size if head.chunks == 1 else min(self.batch_size, self.engine.long_form_rows or self.batch_size)
        )
        group = [job for job in self._queue if job.chunks == head.chunks][:most]
        full = len(group) == most
        return group if full or self._closing or time.monotonic() >= head.arrived + self.max_wait_s else None

    def _next_turn(self) -> tuple[list[Job], list[_Running]] | None:
        """New jobs to start, or a round of the running batches to step, one step each (turn
        about when there are both): a long clip advances a window every other turn however
        many short batches come, and a short batch waits for one window of each long clip."""
        with self._cv:
            while True:
                group = self._ready()
                if group and (self._new_turn or not self._running):
                    for job in group:
                        self._queue.remove(job)
                    self._new_turn = False
                    return group, []
                if self._running:
                    self._new_turn = True
                    round_, self._running = list(self._running), deque()
                    return [], round_
                if self._closing and not self._queue:
                    return None
                self._cv.wait(self._queue[0].arrived + self.max_wait_s - time.monotonic() if self._queue else None)

    def _run(self) -> None:
        while (turn := self._next_turn()) is not None:
            new, round_ = turn
            for batch in [self._start(new)] if new else round_:
                self._step(batch)

    def _start(self, jobs: list[Job]) -> _Running:
        self.on_batch(jobs)
        lengths = [len(j.audio) for j in jobs]
        streaming = any(j.stream for j in jobs) and self.engine.streams(lengths)
        targets = token_targets(self.engine, lengths, self.tokens_per_second)
        steps = self.engine.transcribe_steps([j.audio for j in jobs], targets, Clock(self.engine.device))
        return _Running(jobs, steps, _Deltas(self.engine, jobs) if streaming else None)

    def _step(self, batch: _Running) -> None:
        """One step of a running batch, its streaming jobs listening to the engine's tokens for
        that step only (another batch may run before its next)."""
        if batch.deltas:
            self.engine.stream_to(batch.deltas)
        try:
            next(batch.steps)
        except StopIteration as finished:
            for job, transcript in zip(batch.jobs, finished.value, strict=True):
                self._settle(job, transcript)
            return
        except Exception as err:  # noqa: BLE001 - answered to the client; the server goes on
            if len(batch.jobs) == 1:
                self._settle(batch.jobs[0], error=err)
                return
            alone = [self._start([job]) for job in batch.jobs]  # so a bad clip fails only its own request
            with self._cv:
                self._running.extendleft(reversed(alone))
            return
        finally:
            if batch.deltas:
                self.engine.stream_to(None)
        with self._cv:
            self._running.append(batch)

    def _settle(self, job: Job, transcript: Transcript | None = None, error: Exception | None = None) -> None:
        """Answer the job on its event loop, its place freed there in the same step: pending never
        counts a request whose answer is already being sent (a dropped job's place was freed then)."""

        def settle():
            with self._cv:
                if job.released:  # its client left: its place was freed then, its future cancelled
                    return
                job.released = True
                self.pending -= 1
            if error is not None:
                job.done.set_exception(error)
            else:
                job.done.set_result(transcript)
            if job.stream is not None:
                job.stream.put_nowait(END)

        job.loop.call_soon_threadsafe(settle)


def token_targets(engine: Engine, lengths: list[int], tokens_per_second: float) -> list[int] | None:
    """Random weights never end a transcript: they decode a fixed rate of tokens per second of
    audio (None with real weights, which stop at their end of sequence)."""
    if not engine.length_matched:
        return None
    return [max(1, math.ceil(n / SAMPLE_RATE * tokens_per_second)) for n in lengths]


class _Deltas:
    """The engine's per-step tokens -> each streaming job's new text, pushed to its queue."""

    def __init__(self, engine: Engine, jobs: list[Job]):
        self.engine, self.jobs = engine, jobs
        self.ids: list[list[int]] = [[] for _ in jobs]

    def __call__(self, tokens) -> None:
        row_tokens = tokens.tolist()
        for row, job in enumerate(self.jobs):
            if job.stream is None:
                continue
            self.ids[row].append(row_tokens[row])
            text = self.engine.text_of(self.ids[row])
            # a token can end inside a character (byte-level BPE): send only text that has grown.
            # Compared with what the job has sent, not what this batch has: a retry of the clip
            # after its batch failed decodes the same text again, and sends only what is new
            if text.startswith(job.streamed) and len(text) > len(job.streamed) and "\ufffd" not in text:
                job.loop.call_soon_threadsafe(job.stream.put_nowait, text[len(job.streamed) :])
                job.streamed = text
