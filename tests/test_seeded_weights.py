"""Random weights come from the seed alone: every parameter and buffer of every engine."""

import pytest
import torch
from conftest import tiny_engine

ENGINES = {
    "voxtral_stock": [],
    "voxtral_patched": [],
    "voxtral_compile": [],
    "openai_whisper": ["model=whisper_large_v3"],
}


def _build(name, overrides, seed, monkeypatch):
    """An engine's model built while fresh memory holds NaN: a value the seed did not draw shows."""
    empty = torch.empty

    def poisoned(*args, **kwargs):
        tensor = empty(*args, **kwargs)
        return tensor.fill_(float("nan")) if tensor.is_floating_point() else tensor

    with monkeypatch.context() as patch:
        patch.setattr(torch, "empty", poisoned)
        engine = tiny_engine(name, *overrides, f"model.seed={seed}")
    return {key: value.clone() for key, value in engine.model.state_dict().items()}


@pytest.mark.parametrize("name", ENGINES)
def test_two_builds_with_one_seed_hold_the_same_finite_weights(name, monkeypatch):
    first = _build(name, ENGINES[name], 3, monkeypatch)
    second = _build(name, ENGINES[name], 3, monkeypatch)
    assert first.keys() == second.keys()
    for key, value in first.items():
        assert torch.isfinite(value).all(), f"{key} holds values the seed did not draw"
        assert torch.equal(value, second[key]), key
    other = _build(name, ENGINES[name], 4, monkeypatch)
    assert any(not torch.equal(value, other[key]) for key, value in first.items())  # the seed matters
