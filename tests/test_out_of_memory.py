"""Out of GPU memory: the batch is halved and retried, the split is recorded, no crash.

The CPU cannot run out of GPU memory, so engines raise torch.OutOfMemoryError (what
PyTorch raises on CUDA) above a batch size, as a GPU with too little memory would.
"""

import numpy as np
import pytest
import torch
from conftest import tiny_engine
from engine_runs import run_clips
from fake_engine import fake_engine

from bench.config import RunConfig
from bench.data import Utterance
from bench.errors import BenchError
from bench.pipeline.measure import measure


def utterances(n: int) -> list[Utterance]:
    return [Utterance(f"u{i}", np.zeros(16_000, dtype=np.float32), "one two three") for i in range(n)]


def fits(engine, most_rows: int):
    """Make engine.transcribe run out of memory above most_rows rows; count the calls."""
    transcribe = engine.transcribe
    engine.sizes = []

    def limited(audios, target_tokens, clock):
        engine.sizes.append(len(audios))
        if len(audios) > most_rows:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {len(audios)} GiB")
        return transcribe(audios, target_tokens, clock)

    engine.transcribe = limited
    return engine


def test_a_batch_that_runs_out_of_memory_is_halved_and_retried():
    engine = fits(fake_engine(), most_rows=2)
    m = measure(engine, utterances(8), RunConfig(batch_size=4, warmup_batches=1, progress=False))
    assert set(m.transcripts) == {f"u{i}" for i in range(8)} and not m.failures
    assert [len(b.ids) for b in m.batches] == [2, 2, 2, 2]
    assert [(b.index, b.ids) for b in m.batches][:2] == [(0, ["u0", "u1"]), (0, ["u2", "u3"])]
    # the warm-up batch was split too (not recorded); each timed batch of 4 once
    assert m.oom_splits == [
        {"where": "batch 0 of repeat 0", "size": 4, "into": [2, 2]},
        {"where": "batch 1 of repeat 0", "size": 4, "into": [2, 2]},
    ]
    assert engine.sizes == [4, 2, 2] * 3


def test_one_utterance_that_does_not_fit_fails_the_run_or_is_recorded():
    with pytest.raises(BenchError, match="ran out of GPU memory on utterance u0 alone"):
        measure(fits(fake_engine(), 0), utterances(1), RunConfig(warmup_batches=0, progress=False))
    run = RunConfig(batch_size=2, warmup_batches=0, on_error="skip", progress=False)
    m = measure(fits(fake_engine(), 0), utterances(2), run)
    assert [f.id for f in m.failures] == ["u0", "u1"] and "OutOfMemoryError" in m.failures[0].reason
    assert not m.batches


@pytest.mark.slow
def test_the_patched_engine_recovers_from_out_of_memory_with_stock_tokens(monkeypatch):
    """It sizes its static cache for the first batch's 4 rows, then runs out of memory:
    the halves get a cache of their own size and the same tokens as stock."""
    from conftest import compose_config

    from bench.data import load_utterances

    sample = load_utterances(compose_config("dataset=sample").dataset, progress=False)[-8:]  # short clips
    stock = tiny_engine("voxtral_stock")
    targets = {u.id: stock.count_target_tokens(u.reference) for u in sample}
    expected, _ = run_clips(stock, sample, 2, targets)

    from bench.engines._fast.transformers_lm import TransformersLM

    patched = tiny_engine("voxtral_patched")
    forward = TransformersLM.forward

    def limited(self, embeds, *args):  # a device that holds 2 rows' activations, not 4
        if embeds.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return forward(self, embeds, *args)

    monkeypatch.setattr(TransformersLM, "forward", limited)
    run = RunConfig(batch_size=4, warmup_batches=0, progress=False)
    m = measure(patched, sample, run)
    assert len(m.oom_splits) == 2 and [rows for rows, _ in patched.decoder.shapes] == [2]
    got = {uid: t.tokens for uid, t in m.transcripts.items()}
    assert got == expected
