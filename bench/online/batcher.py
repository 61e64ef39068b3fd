"""Dynamic batching: requests wait for each other (up to run.batch_size, or serve.max_wait_ms
after the first) and one engine thread transcribes them together.

The engine runs in its own thread, one batch at a time; the server's event loop only queues
jobs and awaits their futures, so a slow batch never blocks accepting or refusing requests.
A batch that fails is retried clip by clip, so one bad clip fails only its own request.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from bench.data.audio import SAMPLE_RATE
from bench.engines.base import Engine, Transcript
from bench.pipeline.clock import Clock

END = object()  # the last item of a stream


@dataclass
class Job:
    audio: np.ndarray
    loop: asyncio.AbstractEventLoop
    done: asyncio.Future  # the Transcript, or the exception that failed it
    stream: asyncio.Queue | None = None  # text deltas as decoded, then END
    arrived: float = field(default_factory=time.monotonic)


class Batcher:
    def __init__(self, engine: Engine, batch_size: int, max_wait_s: float, max_queue: int, tokens_per_second: float):
        self.engine, self.batch_size, self.max_wait_s, self.max_queue = engine, batch_size, max_wait_s, max_queue
        self.tokens_per_second = tokens_per_second
        self.pending = 0  # accepted and not yet answered
        self._queue: deque[Job] = deque()
        self._cv = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="bench-engine", daemon=True)

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

    def close(self) -> None:
        """Finish every accepted job, then stop the engine thread."""
        with self._cv:
            self._closing = True
            self._cv.notify()
        self._thread.join()

    def _next_batch(self) -> list[Job] | None:
        with self._cv:
            while not self._queue and not self._closing:
                self._cv.wait()
            if not self._queue:
                return None
            deadline = self._queue[0].arrived + self.max_wait_s
            while len(self._queue) < self.batch_size and not self._closing:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(left)
            return [self._queue.popleft() for _ in range(min(self.batch_size, len(self._queue)))]

    def _run(self) -> None:
        while (jobs := self._next_batch()) is not None:
            try:
                self._transcribe(jobs)
            finally:
                with self._cv:
                    self.pending -= len(jobs)

    def _transcribe(self, jobs: list[Job]) -> None:
        try:
            transcripts = self._engine_call(jobs)
        except Exception as err:  # noqa: BLE001 - answered to the client; the server goes on
            if len(jobs) == 1:
                _settle(jobs[0], error=err)
                return
            for job in jobs:  # alone, so a bad clip fails only its own request
                self._transcribe([job])
            return
        for job, transcript in zip(jobs, transcripts, strict=True):
            _settle(job, transcript)

    def _engine_call(self, jobs: list[Job]) -> list[Transcript]:
        """One engine call, its streaming jobs listening to its tokens for its length only (a
        retry of one clip must not feed the failed batch's listener)."""
        lengths = [len(j.audio) for j in jobs]
        streaming = any(j.stream for j in jobs) and self.engine.streams(lengths)
        if streaming:
            self.engine.stream_to(_Deltas(self.engine, jobs))
        try:
            targets = token_targets(self.engine, lengths, self.tokens_per_second)
            return self.engine.transcribe([j.audio for j in jobs], targets, Clock(self.engine.device))
        finally:
            if streaming:
                self.engine.stream_to(None)


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
        self.sent = ["" for _ in jobs]

    def __call__(self, tokens) -> None:
        row_tokens = tokens.tolist()
        for row, job in enumerate(self.jobs):
            if job.stream is None:
                continue
            self.ids[row].append(row_tokens[row])
            text = self.engine.text_of(self.ids[row])
            # a token can end inside a character (byte-level BPE): send only text that has grown
            if text.startswith(self.sent[row]) and len(text) > len(self.sent[row]) and "\ufffd" not in text:
                job.loop.call_soon_threadsafe(job.stream.put_nowait, text[len(self.sent[row]) :])
                self.sent[row] = text


def _settle(job: Job, transcript: Transcript | None = None, error: Exception | None = None) -> None:
    def settle():
        if job.done.done():  # the client went away
            return
        if error is not None:
            job.done.set_exception(error)
        else:
            job.done.set_result(transcript)
        if job.stream is not None:
            job.stream.put_nowait(END)

    job.loop.call_soon_threadsafe(settle)
