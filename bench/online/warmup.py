"""bench.serve's warm-up: before /health answers, the engine runs once at every shape the
batcher can give it, so that no request meets a compile or a graph capture.

The batcher forms batches of 1 to run.batch_size clips of one chunk count (bench.online.batcher);
an engine that compiles per shape pads their rows to a power of two (row_buckets). Short clips
(one 30 s chunk) at every batch size, and long-form clips (two chunks: a Whisper engine's
window-by-window path) at every batch size, are planned (Engine.plan, as an offline run plans
its batches) and one batch per distinct Engine.batch_shape is run. An engine whose shape grows
with every further chunk (Voxtral's static cache holds the longest clip) meets a new shape at a
clip of three chunks or more. Compiling it while serving held every request behind it for the
compile (seconds on a GPU, tens of seconds on a CPU, for each new chunk count), so after the
warm-up the engine compiles and captures nothing (Engine.warm_shapes_only): such a clip runs
uncompiled, slower itself, and a request behind it waits one uncompiled step. /metrics and
/v1/models count those decodes, and any compile made after start-up.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from bench.data.audio import SAMPLE_RATE
from bench.engines.base import Engine
from bench.online.batcher import token_targets
from bench.pipeline.clock import Clock

CHUNK_SAMPLES = 30 * SAMPLE_RATE


def serving_batches(batch_size: int, max_audio_seconds: float) -> list[list[int]]:
    """Every batch (clip lengths in samples) the warm-up plans: 1 s clips and, when the server
    takes clips over 30 s, 31 s clips, at each batch size up to batch_size."""
    lengths = [SAMPLE_RATE]
    if max_audio_seconds > 30:
        lengths.append(CHUNK_SAMPLES + SAMPLE_RATE)
    return [[n] * rows for n in lengths for rows in range(1, batch_size + 1)]


def batches_to_run(engine: Engine, batches: list[list[int]]) -> list[list[int]]:
    """One batch per distinct shape, in order; an engine that compiles nothing per shape
    (batch_shape None) runs one batch of each clip length, its largest."""
    chosen: dict = {}
    for lengths in batches:
        shape = engine.batch_shape(lengths)
        key = (lengths[0], None) if shape is None else ("shape", shape)
        if key not in chosen or shape is None:
            chosen[key] = lengths  # None: the last (largest) batch of that length
    return list(chosen.values())


def row_buckets(batch_size: int) -> list[int]:
    """The rows a served batch is padded to: powers of two up to batch_size, and batch_size (as
    vLLM's CUDA graph sizes). A lone request runs as one row, not as run.batch_size rows, and
    the shapes to warm stay few (4 for batches of up to 8)."""
    return sorted({*(2**k for k in range(batch_size.bit_length()) if 2**k < batch_size), batch_size})


def warm_every_shape(
    engine: Engine,
    batch_size: int,
    max_audio_seconds: float,
    tokens_per_second: float,
    say: Callable[[str], None] | None = None,
) -> int:
    """Plan and run the serving shapes; the number of batches run. `say` gets a line before the
    warm-up and after each batch: with a cold compile cache it takes minutes on a CPU, before
    which /health does not answer."""
    say = say or (lambda line: None)
    engine.row_buckets = row_buckets(batch_size)
    batches = serving_batches(batch_size, max_audio_seconds)
    engine.plan(batches)
    noise = np.random.default_rng(0).normal(0, 0.01, max(batches[-1])).astype(np.float32)
    runs = batches_to_run(engine, batches)
    say(f"warming up: {len(runs)} batch(es), one per shape the batcher can form, before /health answers")
    for done, lengths in enumerate(runs, 1):
        began = time.perf_counter()
        targets = token_targets(engine, lengths, tokens_per_second)
        engine.transcribe([noise[:n] for n in lengths], targets, Clock(engine.device))
        took, seconds = time.perf_counter() - began, lengths[0] / SAMPLE_RATE
        say(f"warm-up {done}/{len(runs)}: {len(lengths)} clip(s) of {seconds:g} s in {took:.1f} s")
    engine.warm_shapes_only()  # a compile now would hold every request behind it
    if getattr(engine, "COMPILES", False):
        say("from now on nothing is compiled: a batch at a shape the warm-up did not make (a clip of more "
            "30 s chunks) runs uncompiled, counted in /metrics as bench_uncompiled_decodes_after_startup")  # fmt: skip
    return len(runs)
