"""packed_linears: a oneDNN product over a reordered weight gives nn.Linear's values, eager and
compiled; the fast paths' decode steps run every linear layer through it (and none through
aten's matrix products) where it acts, and not at all where it is off or inert; and the dense
weights are dropped, not kept beside the reordered copies. That the tokens stay stock's with the
patch on, and with it off alone, is checked with every other patch in test_whisper_engines and
test_voxtral_patched."""

import gc

import pytest
import torch
from conftest import compose_config, tiny_engine
from torch import nn

from bench.data import load_utterances
from bench.engines._fast import packed_linears
from bench.engines._fast.packed_linears import PackedLinear, pack_linears
from bench.engines.whisper_patched import PATCHES as WHISPER_PATCHES
from bench.pipeline.clock import Clock

pytestmark = pytest.mark.skipif(
    not torch.backends.mkldnn.is_available(), reason="this PyTorch build has no oneDNN (mkldnn) to pack for"
)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 48), (8, 48), (3, 5, 48)])
def test_a_packed_linear_gives_nn_linears_values(shape, bias):
    torch.manual_seed(0)
    linear = nn.Linear(48, 37, bias=bias)
    x = torch.randn(*shape)
    with torch.inference_mode():
        expected = linear(x)
        packed = PackedLinear(linear)
        torch.testing.assert_close(packed(x), expected, rtol=1e-5, atol=1e-5)
        compiled = torch.compile(lambda t: packed(t) * 2.0, dynamic=False)
        torch.testing.assert_close(compiled(x), expected * 2.0, rtol=1e-5, atol=1e-5)


def test_a_strided_input_is_read_as_its_values():
    """The last position of a sequence (hidden[:, -1]) is a strided view: the head's input."""
    torch.manual_seed(0)
    linear = nn.Linear(16, 9)
    hidden = torch.randn(4, 7, 16)
    with torch.inference_mode():
        torch.testing.assert_close(PackedLinear(linear)(hidden[:, -1]), linear(hidden[:, -1]), rtol=1e-5, atol=1e-5)


def test_a_dropped_module_frees_its_slot():
    packed = PackedLinear(nn.Linear(8, 8))
    number = packed.slot.data_ptr()
    assert packed_linears._MODULES[number]() is packed
    del packed
    gc.collect()
    assert number not in packed_linears._MODULES


def test_every_linear_below_a_module_is_packed():
    block = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Sequential(nn.Linear(6, 6), nn.Linear(6, 2)))
    assert pack_linears(block) == 3
    assert not any(type(m) is nn.Linear for m in block.modules())
    assert sum(type(m) is PackedLinear for m in block.modules()) == 3


def products_per_step(engine, clip) -> tuple[float, float]:
    """(oneDNN packed products, aten matrix products) per decode step, from a profile of the
    decode phase of one transcription."""
    from torch.profiler import ProfilerActivity, profile

    engine.transcribe([clip.audio], [5], Clock(torch.device("cpu")))  # the warm-up compiles
    with profile(activities=[ProfilerActivity.CPU]) as prof, Clock(torch.device("cpu")) as clock:
        engine.transcribe([clip.audio], [5], clock)
    events = prof.events()
    # the profiler may list a range twice (the annotation and its function event): the same span
    spans = {(e.time_range.start, e.time_range.end) for e in events if e.name == "phase:decode"}
    assert len(spans) == 1
    ((start, end),) = spans
    inside = [e for e in events if start <= e.time_range.start < end]
    packed = sum(1 for e in inside if e.name == "bench::packed_linear")
    dense = sum(1 for e in inside if e.name in ("aten::mm", "aten::addmm", "aten::linear"))
    steps = clock.counts["decode_steps"]
    assert steps > 1
    return packed / steps, dense / steps


@pytest.fixture(scope="module")
def clip():
    """The sample's shortest clip: one window, one batch shape, one decode phase."""
    return min(load_utterances(compose_config("dataset=sample").dataset, progress=False), key=lambda u: len(u.audio))


def test_whisper_patched_steps_through_packed_products_only(clip):
    engine = tiny_engine("whisper_patched")
    decoder = engine.model.model.decoder
    # per layer: fused q/k/v, out; cross-attention q, out (its k and v are made at prefill); fc1, fc2
    per_step = 6 * len(decoder.layers) + 1  # and the output projection
    assert engine.report()["packed_linears_active"]
    assert products_per_step(engine, clip) == (per_step, 0)


def test_whisper_patched_without_the_patch_steps_through_aten(clip):
    engine = tiny_engine("whisper_patched", f"engine.patches=[{','.join(set(WHISPER_PATCHES) - {'packed_linears'})}]")
    assert not engine.report()["packed_linears_active"]
    packed, dense = products_per_step(engine, clip)
    assert packed == 0 and dense == 6 * len(engine.model.model.decoder.layers) + 1


def test_the_patch_is_inert_in_another_dtype():
    engine = tiny_engine("whisper_patched", dtype=torch.bfloat16)
    assert not engine.report()["packed_linears_active"]
    assert not any(isinstance(m, PackedLinear) for m in engine.model.modules())


def test_the_dense_weights_are_dropped_not_kept_twice():
    """Whisper's output projection is its token embedding: that one weight stays, once."""
    packed = tiny_engine("whisper_patched").model
    unpacked = tiny_engine(
        "whisper_patched", f"engine.patches=[{','.join(set(WHISPER_PATCHES) - {'packed_linears'})}]"
    ).model
    dense = sum(m.weight.numel() for m in unpacked.model.decoder.modules() if type(m) is nn.Linear)
    count = lambda model: sum(p.numel() for p in model.parameters())  # noqa: E731
    assert count(packed) == count(unpacked) - dense
    assert packed.proj_out.packed_weight.shape == unpacked.model.decoder.embed_tokens.weight.shape


def test_voxtral_patched_packs_its_language_model_and_head():
    engine = tiny_engine("voxtral_patched")
    inner = engine.model.model
    assert engine.report()["packed_linears_active"]
    assert isinstance(engine.model.lm_head, PackedLinear)
    assert not any(type(m) is nn.Linear for m in inner.language_model.modules())
    assert any(type(m) is nn.Linear for m in inner.audio_tower.modules())  # the encoder is left as shipped
