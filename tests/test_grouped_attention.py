"""grouped_attention: a one-position step reads each key-value head once, and computes what
transformers' SDPA path computes with every key and value copied per query head."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import tiny_engine

from bench.engines._fast.grouped_attention import grouped_attention
from bench.pipeline.clock import Clock


def test_one_position_equals_attention_over_repeated_keys_and_values():
    from transformers.integrations.sdpa_attention import repeat_kv

    torch.manual_seed(0)
    rows, kv_heads, groups, positions, dim = 2, 2, 4, 50, 16
    query = torch.randn(rows, kv_heads * groups, 1, dim)
    key, value = torch.randn(rows, kv_heads, positions, dim), torch.randn(rows, kv_heads, positions, dim)
    mask = torch.ones(rows, 1, 1, positions, dtype=torch.bool)
    mask[0, ..., 30:] = False  # a row that has filled 30 slots of the cache
    module = SimpleNamespace(num_key_value_groups=groups)
    out, weights = grouped_attention(module, query, key, value, mask, scaling=0.25)
    expected = torch.nn.functional.scaled_dot_product_attention(
        query, repeat_kv(key, groups), repeat_kv(value, groups), attn_mask=mask, scale=0.25
    ).transpose(1, 2)
    assert weights is None and out.shape == (rows, 1, kv_heads * groups, dim)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("grouped", [True, False])
def test_a_decode_step_copies_no_keys_and_values_with_the_patch(monkeypatch, grouped):
    """As under torch.compile (where transformers copies them per query head), counted eagerly:
    without the patch every layer of every decode step copies its keys and values; with it, none
    does (the prefill, causal and unmasked here, attends grouped either way)."""
    import transformers.integrations.sdpa_attention as sdpa

    copies = []
    real = sdpa.repeat_kv
    monkeypatch.setattr(sdpa, "repeat_kv", lambda states, n: copies.append(states.shape) or real(states, n))
    monkeypatch.setattr(sdpa, "is_torchdynamo_compiling", lambda: True)
    patches = ["static_cache", "sync_free_loop", *(["grouped_attention"] if grouped else [])]
    engine = tiny_engine("voxtral_patched", f"engine.patches=[{','.join(patches)}]")
    audio = [np.random.default_rng(0).standard_normal(16_000 * 3).astype(np.float32) * 0.1]
    with Clock(torch.device("cpu")) as clock:
        engine.transcribe(audio, [6], clock)
    layers, steps = 2, clock.counts["decode_steps"]
    assert steps >= 6  # 6 tokens and the end of sequence: the prefill's, then a step each (one lagged more)
    assert len(copies) == (0 if grouped else 2 * layers * steps)  # keys and values, per layer and step
