"""attention_window: a decode step's attention reads the cache slots in use, by the rule of
bench/engines/_fast/windows.py, and without the patch the whole capacity."""

import numpy as np
import pytest
import torch
from conftest import tiny_engine

from bench.engines._fast import grouped_attention
from bench.engines._fast.windows import window_sizes
from bench.pipeline.clock import Clock


def test_windows_double_from_128_slots_to_the_capacity():
    assert window_sizes(891, 384) == [512, 891]  # Voxtral's 30 s prompt of 383, then 500 tokens
    assert window_sizes(228, 5) == [128, 228]  # Whisper's prompt of 4, then 224 tokens
    assert window_sizes(100, 5) == [100]  # a cache smaller than the first window: read whole
    assert window_sizes(4391, 392) == [512, 1024, 2048, 4096, 4391]


@pytest.fixture
def key_lengths(monkeypatch):
    """The key length of every one-position attention call (a decode step's), seen by a spy
    registered with transformers in grouped_attention's place, which is put back after."""
    seen = []
    real = grouped_attention.grouped_attention

    def spy(module, query, key, *args, **kwargs):
        if query.shape[2] == 1:  # a decode step (the prefill reads the whole cache either way)
            seen.append(key.shape[2])
        return real(module, query, key, *args, **kwargs)

    monkeypatch.setattr(grouped_attention, "grouped_attention", spy)
    yield seen
    monkeypatch.undo()
    grouped_attention.register()


@pytest.mark.parametrize("window", [True, False])
def test_each_step_attends_the_smallest_window_holding_its_slots(key_lengths, window):
    seen = key_lengths
    patches = ["static_cache", "sync_free_loop", "grouped_attention", *(["attention_window"] if window else [])]
    engine = tiny_engine("voxtral_patched", "engine.max_new_tokens=300", f"engine.patches=[{','.join(patches)}]")
    audio = [np.random.default_rng(0).standard_normal(16_000 * 3).astype(np.float32) * 0.1]
    with Clock(torch.device("cpu")) as clock:
        engine.transcribe(audio, [200], clock)
    prompt, capacity = engine.context_tokens(len(audio[0])), engine.decoder.cache_len
    assert (prompt, capacity) == (383, 16 + 375 + 300)
    layers, steps = 2, clock.counts["decode_steps"]
    # step k writes slot prompt + k - 1: 512 slots hold steps 1 to 129, then the capacity
    expected = [(512 if prompt + k <= 512 else capacity) if window else capacity for k in range(1, steps + 1)]
    assert seen == [n for n in expected for _ in range(layers)]
    assert 512 in seen if window else set(seen) == {capacity}
