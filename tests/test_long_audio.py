"""Clips of minutes: Voxtral in 30 s chunks as its processor makes them, Whisper in
sequential 30 s windows each prompted with the text before it (as whisper.transcribe)."""

import numpy as np
import pytest
from conftest import tiny_engine
from engine_runs import CPU

from bench.errors import BenchError
from bench.pipeline.clock import Clock

SECONDS = 150  # five 30 s chunks
CLIP = np.random.default_rng(1).uniform(-0.3, 0.3, SECONDS * 16_000).astype(np.float32)
REFERENCE = "the quick brown fox jumps over the lazy dog " * 12


def transcribe(engine, audios, targets):
    with Clock(CPU) as clock:
        return engine.transcribe(audios, targets, clock)


@pytest.mark.slow
def test_voxtral_patched_grows_its_cache_for_long_audio_and_keeps_stock_tokens():
    stock = tiny_engine("voxtral_stock", "engine.max_new_tokens=30")
    patched = tiny_engine("voxtral_patched", "engine.max_new_tokens=30")
    target = stock.count_target_tokens(REFERENCE)
    assert target > 30  # more than one chunk's budget: the budget counts per 30 s chunk
    short = CLIP[: 20 * 16_000]
    transcribe(patched, [short], [5])  # sizes its cache for the first batch: one chunk
    small_cache = patched.max_cache_len
    assert patched.capacity_chunks == 1
    expected = transcribe(stock, [CLIP], [target])[0]
    got = transcribe(patched, [CLIP], [target])[0]
    assert got.tokens == expected.tokens and got.n_tokens == target
    assert patched.capacity_chunks == 5 and patched.max_cache_len > small_cache


def test_a_reference_longer_than_the_token_budget_is_refused_with_the_setting_named():
    stock = tiny_engine("voxtral_stock", "engine.max_new_tokens=5")
    with pytest.raises(BenchError, match=r"raise engine.max_new_tokens"):
        transcribe(stock, [CLIP[:16_000]], [6])


def test_voxtral_compile_sizes_its_cache_at_the_first_batch_and_names_the_setting_beyond_it():
    engine = tiny_engine("voxtral_compile")
    transcribe(engine, [CLIP[: 40 * 16_000]], [3])  # fixes the shapes: two chunks
    assert engine.report()["static_cache_len"] == 16 + 2 * (375 + 500)
    with pytest.raises(BenchError, match=r"needs 5 chunks .* holds \(2\); raise engine.max_chunks to 5"):
        transcribe(engine, [CLIP], [10])


def test_whisper_decodes_long_audio_window_after_window_with_the_previous_text_as_prompt(monkeypatch):
    engine = tiny_engine("openai_whisper", "model=whisper_large_v3")
    prompts = []
    task_class = engine.task_class

    def spy(model, options, *args):
        prompts.append(options.prompt)
        return task_class(model, options, *args)

    monkeypatch.setattr(engine, "task_class", spy)
    target = engine.count_target_tokens(REFERENCE)
    out = transcribe(engine, [CLIP], [target])[0]
    assert out.n_tokens == target == len(out.tokens)
    assert len(prompts) == 5 and prompts[0] is None
    # each window's prompt is every token decoded before it
    window_tokens = [len(p or []) for p in prompts] + [out.n_tokens]
    assert all(b > a for a, b in zip(window_tokens, window_tokens[1:], strict=False))
    assert prompts[-1] == out.tokens[: len(prompts[-1])]
