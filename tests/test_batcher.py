"""bench.serve's batcher with a scripted engine: batches hold one chunk count, a long clip's
windows take turns with short batches, and a failed batch's retry streams each token once.

The engine here is a script, not a model: each clip's text is a function of its samples alone
(so a text routed to the wrong request shows), and it logs every unit of work it does in order
(so what ran before what is read from the log, not from timings)."""

import asyncio
import threading
import time

import numpy as np
import torch

from bench.data.audio import SAMPLE_RATE
from bench.engines.base import Transcript, chunk_count, run_to_end
from bench.online.batcher import END, Batcher, Job


def clip(seconds: float, mark: int) -> np.ndarray:
    """A clip whose first sample names it, mark / 1000 (the scripted engine's text is the mark;
    it survives a 16-bit encoding)."""
    audio = np.zeros(int(seconds * SAMPLE_RATE), np.float32)
    audio[0] = mark / 1000
    return audio


class ScriptedEngine:
    """What the batcher asks of an engine. Text: 'clip N'; a long clip is one step per 30 s
    window (window_s of work each). Streams one token per word; a clip marked as bad fails any
    batch it shares."""

    device, dtype, length_matched = torch.device("cpu"), torch.float32, False
    long_form_rows = None  # long clips batch together, up to batch_size
    windows_long_clips = False  # a long clip reaches it decoded whole (its marks read its first sample)

    def __init__(self, bad: int | None = None, window_s: float = 0.0):
        self.window_s = window_s
        self.log: list[tuple] = []  # ("batch", marks) or ("window", mark, j, of)
        self.bad, self.listener = bad, None
        self.in_long = threading.Event()  # set when a long clip's first window runs
        self.go_on = threading.Event()  # the first window returns when this is set
        self.go_on.set()

    def graph_captures(self):
        return 0

    def uncompiled_decodes(self):
        return 0

    def longest_clip(self):
        return None  # any length (bench.serve's serve.max_audio_seconds decides)

    def streams(self, lengths):
        return all(chunk_count(n) == 1 for n in lengths)

    def stream_to(self, listener):
        self.listener = listener

    def text_of(self, ids):
        return " ".join(["clip", str(ids[0])][: len(ids)]) if ids else ""  # "clip", then "clip N"

    def transcribe(self, audios, targets, clock):
        return run_to_end(self.transcribe_steps(audios, targets, clock))

    def transcribe_steps(self, audios, targets, clock):
        marks = [round(float(a[0]) * 1000) for a in audios]
        if any(chunk_count(len(a)) > 1 for a in audios):
            out = []
            for audio, mark in zip(audios, marks, strict=True):
                windows = chunk_count(len(audio))
                for j in range(windows):
                    if j:
                        yield
                    self.log.append(("window", mark, j, windows))
                    time.sleep(self.window_s)  # the window's work
                    if j == 0:
                        self.in_long.set()
                        assert self.go_on.wait(30), "the test never let the first window end"
                out.append(Transcript(f"clip {mark}", 2, [mark]))
            return out
        self.log.append(("batch", marks))
        if self.listener is not None:  # "clip" then the mark: two steps, one token per row each
            self.listener(torch.tensor([m for m in marks]))
        if self.bad in marks and len(marks) > 1:
            raise RuntimeError("a bad clip in the batch")
        if self.listener is not None:
            self.listener(torch.tensor([m for m in marks]))
        return [Transcript(f"clip {m}", 2, [m]) for m in marks]


async def _submit(batcher: Batcher, audios, stream: bool = False) -> list[Job]:
    loop = asyncio.get_running_loop()
    jobs = [Job(a, loop, loop.create_future(), asyncio.Queue() if stream else None) for a in audios]
    for job in jobs:
        assert batcher.submit(job)
    return jobs


def queued_then_run(batcher: Batcher, audios) -> list[str]:
    """Every clip queued before the engine thread starts (so the batches it forms depend on
    nothing else), then run to the end: their texts, in order."""

    async def scenario():
        jobs = await _submit(batcher, audios)
        batcher.start()
        return [(await job.done).text for job in jobs]

    texts = asyncio.run(scenario())
    batcher.close()
    return texts


def test_a_batch_holds_clips_of_one_chunk_count():
    engine = ScriptedEngine()
    batcher = Batcher(engine, batch_size=4, max_wait_s=0.0, max_queue=16, tokens_per_second=3.5)

    texts = queued_then_run(batcher, [clip(2, 1), clip(2, 2), clip(2, 3), clip(45, 4), clip(2, 5), clip(2, 6)])
    assert texts == [f"clip {m}" for m in (1, 2, 3, 4, 5, 6)]
    batches = [entry[1] for entry in engine.log if entry[0] == "batch"]
    assert batches == [[1, 2, 3, 5], [6]]  # the 45 s clip (two chunks) ran in no short batch
    assert [e for e in engine.log if e[0] == "window"] == [("window", 4, 0, 2), ("window", 4, 1, 2)]


def test_short_requests_run_between_a_long_clips_windows():
    engine = ScriptedEngine()
    engine.go_on.clear()
    batcher = Batcher(engine, batch_size=2, max_wait_s=0.0, max_queue=16, tokens_per_second=3.5)
    batcher.start()

    async def scenario():
        (long,) = await _submit(batcher, [clip(150, 9)])  # five 30 s windows
        assert await asyncio.to_thread(engine.in_long.wait, 30)
        shorts = await _submit(batcher, [clip(1, 1), clip(1, 2), clip(1, 3)])  # while window 0 runs
        engine.go_on.set()
        return [(await job.done).text for job in [long, *shorts]]

    texts = asyncio.run(scenario())
    batcher.close()
    assert texts == ["clip 9", "clip 1", "clip 2", "clip 3"]
    # every short clip was answered before the long clip's last window (old: after all five)
    last_window = engine.log.index(("window", 9, 4, 5))
    shorts_done = max(i for i, e in enumerate(engine.log) if e[0] == "batch")
    assert shorts_done < last_window
    # and turn about: a short batch, then one window, then the next short batch
    assert [e[0] for e in engine.log[:5]] == ["window", "window", "batch", "window", "batch"]


def test_a_retried_request_streams_each_token_once():
    engine = ScriptedEngine(bad=2)  # clip 2 fails the batch it shares; alone it is transcribed
    batcher = Batcher(engine, batch_size=3, max_wait_s=0.0, max_queue=16, tokens_per_second=3.5)

    async def scenario():
        jobs = await _submit(batcher, [clip(1, 1), clip(1, 2), clip(1, 3)], stream=True)
        batcher.start()
        streamed = []
        for job in jobs:
            deltas = []
            while (delta := await job.stream.get()) is not END:
                deltas.append(delta)
            streamed.append("".join(deltas))
        return streamed, [(await job.done).text for job in jobs]

    streamed, texts = asyncio.run(scenario())
    batcher.close()
    assert [e[1] for e in engine.log] == [[1, 2, 3], [1], [2], [3]]  # failed together, then retried alone
    assert texts == ["clip 1", "clip 2", "clip 3"]
    assert streamed == texts  # each row sent "clip" in the failed batch, then only " N" on the retry


def test_each_turn_of_the_running_batches_steps_every_long_clip_once():
    """Two long clips in progress: a turn of the running batches steps both, so neither waits
    for the other's windows nor for more than one short batch between its own windows."""
    engine = ScriptedEngine()
    batcher = Batcher(engine, batch_size=2, max_wait_s=0.0, max_queue=16, tokens_per_second=3.5)

    texts = queued_then_run(batcher, [clip(90, 1), clip(120, 2), clip(1, 3), clip(1, 4), clip(1, 5), clip(1, 6)])
    assert texts == [f"clip {m}" for m in range(1, 7)]
    steps = [(e[1], e[2]) if e[0] == "window" else tuple(e[1]) for e in engine.log]
    # start clip 1 | round: 1 | start clip 2 | round: 1, 2 | start 3+4 | round: 2 | start 5+6 | round: 2
    assert steps == [(1, 0), (1, 1), (2, 0), (1, 2), (2, 1), (3, 4), (2, 2), (5, 6), (2, 3)]


def test_long_clips_share_a_batch_only_up_to_the_engines_long_form_rows():
    started = {}
    for rows in (None, 1):
        engine = ScriptedEngine()
        engine.long_form_rows = rows
        started[rows] = []
        record = lambda jobs, out=started[rows]: out.append([round(j.audio[0] * 1000) for j in jobs])  # noqa: E731
        batcher = Batcher(engine, batch_size=4, max_wait_s=0.0, max_queue=16, tokens_per_second=3.5, on_batch=record)
        texts = queued_then_run(batcher, [clip(45, 1), clip(45, 2), clip(1, 3), clip(45, 4)])
        assert texts == ["clip 1", "clip 2", "clip 3", "clip 4"]
    assert started == {None: [[1, 2, 4], [3]], 1: [[1], [2], [3], [4]]}


class SettingsSeen(ScriptedEngine):
    """Records the torch settings its steps run with, on the engine thread."""

    def transcribe_steps(self, audios, targets, clock):
        self.seen = (torch._dynamo.config.recompile_limit, torch.get_num_threads())
        return (yield from super().transcribe_steps(audios, targets, clock))


def test_the_engine_thread_runs_with_the_compile_settings_and_thread_count_of_the_warm_up():
    """torch.compile's config overrides and the intra-op thread count are per thread: a plain
    thread started at the defaults (a recompile limit of 8, past which a served shape ran eager
    without a word)."""
    engine, threads = SettingsSeen(), torch.get_num_threads()
    torch.set_num_threads(1 if threads > 1 else 2)
    try:
        with torch._dynamo.config.patch(recompile_limit=77):  # as an engine's plan raises it
            batcher = Batcher(engine, batch_size=2, max_wait_s=0.0, max_queue=16, tokens_per_second=3.5)
        assert queued_then_run(batcher, [clip(2, 1)]) == ["clip 1"]
        assert engine.seen == (77, 1 if threads > 1 else 2)
    finally:
        torch.set_num_threads(threads)
