"""fused_projections: the stacked weights are stock's, nothing is kept twice, and a forward
pass makes three matrix products fewer per decoder layer (q/k/v -> 1, gate/up -> 1).
That tokens and logits stay stock's is checked with every other patch in test_voxtral_patched."""

import pytest
import torch
from conftest import compose_config, tiny_engine
from torch import nn

from bench.data import load_utterances
from bench.engines._fast.fusion import ATTENTION, MLP, Columns, FusedProjections
from bench.engines.voxtral_patched import PATCHES
from bench.errors import BenchError
from bench.pipeline.clock import Clock

# eager, and every product through aten (packed_linears makes them oneDNN calls): each product seen
WITHOUT_COMPILE = [p for p in PATCHES if p not in ("compiled_step", "compiled_prefill", "packed_linears")]
UNPACKED = [p for p in PATCHES if p != "packed_linears"]  # the dense weights kept as parameters


def patched(*patches: str):
    return tiny_engine("voxtral_patched", f"engine.patches=[{','.join(patches)}]")


def test_the_stacked_weights_are_stocks_and_none_is_kept_twice():
    fused = patched(*UNPACKED).model
    stock = tiny_engine("voxtral_stock").model  # same seed: the same weights
    stock_layers = stock.model.language_model.layers
    for layer, original in zip(fused.model.language_model.layers, stock_layers, strict=True):
        for block, source, names in ((layer.self_attn, original.self_attn, ATTENTION), (layer.mlp, original.mlp, MLP)):
            assert isinstance(block, FusedProjections)
            assert all(isinstance(getattr(block.block, name), Columns) for name in names)
            assert torch.equal(block.projection.weight, torch.cat([getattr(source, name).weight for name in names]))
    assert sum(p.numel() for p in fused.parameters()) == sum(p.numel() for p in stock.parameters())


def matrix_products(engine, clip) -> tuple[int, int]:
    """aten::mm/addmm calls in one transcription, and the language model's forward passes."""
    from torch.profiler import ProfilerActivity, profile

    passes = []
    hook = engine.model.model.language_model.register_forward_hook(lambda *args: passes.append(1))
    with profile(activities=[ProfilerActivity.CPU]) as prof, Clock(torch.device("cpu")) as clock:
        engine.transcribe([clip.audio], [6], clock)
    hook.remove()
    products = sum(1 for e in prof.events() if e.name in ("aten::mm", "aten::addmm"))
    return products, len(passes)  # the prefill (its pieces, chunked_prefill), then one per step


def test_each_layer_makes_three_matrix_products_fewer():
    clip = load_utterances(compose_config("dataset=sample").dataset, progress=False)[0]
    fused = patched(*WITHOUT_COMPILE)
    unfused = patched(*(p for p in WITHOUT_COMPILE if p != "fused_projections"))
    with_fusion, passes = matrix_products(fused, clip)
    without, passes_unfused = matrix_products(unfused, clip)
    assert passes == passes_unfused > 1
    layers = len(fused.model.model.language_model.layers)
    assert without - with_fusion == 3 * layers * passes


class Twin(nn.Module):
    def __init__(self, left: nn.Module, right: nn.Module):
        super().__init__()
        self.left, self.right = left, right

    def forward(self, x):
        return self.left(x) * self.right(x)


def test_a_block_gives_the_same_values_fused():
    torch.manual_seed(0)
    block = Twin(nn.Linear(8, 5), nn.Linear(8, 5))
    x = torch.randn(3, 2, 8)
    expected = block(x)
    torch.testing.assert_close(FusedProjections(block, ("left", "right"))(x), expected, rtol=0, atol=1e-6)


def test_a_projection_without_a_bias_is_stacked_with_zeros():
    """Whisper's k projection has no bias where q and v have one."""
    torch.manual_seed(0)
    block = Twin(nn.Linear(8, 5, bias=False), nn.Linear(8, 5))
    x = torch.randn(3, 2, 8)
    expected = block(x)
    fused = FusedProjections(block, ("left", "right"))
    assert torch.equal(fused.projection.bias[:5], torch.zeros(5))
    torch.testing.assert_close(fused(x), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("left", "right", "message"),
    [
        (nn.Identity(), nn.Linear(8, 5), "plain nn.Linear"),
        (nn.Linear(8, 5), nn.Linear(6, 5), "same input width"),
    ],
)
def test_what_cannot_be_stacked_is_refused(left, right, message):
    with pytest.raises(BenchError, match=message):
        FusedProjections(Twin(left, right), ("left", "right"))
