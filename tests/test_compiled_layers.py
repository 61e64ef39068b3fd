"""compiled_step's two scopes, and compiled_prefill per layer. Under a CUDA graph (emulated
on the CPU) one decoder layer's graph is compiled and every layer of every decode step runs
it; with compiled_prefill the prefill runs the same function at the prompt's shape and the
audio encoder's layers one of their own; where the host runs every step, the whole step is
compiled once. That the tokens stay stock's is checked with every other patch in
test_voxtral_patched."""

import pytest
import torch
from conftest import compose_config, tiny_engine
from cuda_graph_emulation import Emulation

from bench.data import load_utterances
from bench.pipeline.clock import Clock

LAYERS = 4  # more than the tiny scale's 2, so one graph per layer would show


@pytest.fixture(scope="module")
def clip():
    return load_utterances(compose_config("dataset=sample").dataset, progress=False)[0]


def counted_engine(monkeypatch, *overrides, graph: bool = False):
    """A 4-layer engine whose calls of the one compiled layer function are counted (with graph,
    on the emulated CUDA graph path)."""
    torch._dynamo.reset()  # an earlier test's compile of the same shapes would hide this one's
    engine = tiny_engine("voxtral_patched", f"model.tiny.text_config.num_hidden_layers={LAYERS}", *overrides)
    if graph:
        Emulation(engine, monkeypatch)
    calls = []
    layers = getattr(engine.decoder, "compiled_layers", None)  # only where the layers scope runs
    if layers is not None:
        compiled = layers.layer_fn
        monkeypatch.setattr(layers, "layer_fn", lambda *args: calls.append(args[1].shape[1]) or compiled(*args))
    return engine, calls


def decode(engine, clip) -> int:
    return transcribe(engine, clip)[1]


def transcribe(engine, clip) -> tuple[list[int], int]:
    """The clip's tokens, and the decode steps taken."""
    with Clock(torch.device("cpu")) as clock:
        (out,) = engine.transcribe([clip.audio], [6], clock)
    return out.tokens, clock.counts["decode_steps"]


NO_PREFILL = (
    "engine.patches=["
    + ",".join(
        ["device_features", "batched_encoder", "merge_no_sync", "static_cache", "sync_free_loop", "compiled_step"]
    )
    + ",cuda_graph]"
)


def test_under_a_cuda_graph_every_layer_runs_one_compiled_graph(clip, monkeypatch):
    engine, calls = counted_engine(monkeypatch, NO_PREFILL, graph=True)
    steps = decode(engine, clip)
    assert steps > 1
    # the graph's warm-up step and its capture, then one replay per step; none from prefill
    assert calls == [1] * LAYERS * (steps + 2)
    report = engine.report()
    assert report["compiled_scope"] == "layers"
    assert report["graphs_compiled"] == 1  # one graph, not one per layer


def test_compiled_prefill_runs_the_same_layer_function_at_the_prompts_shape(clip, monkeypatch):
    engine, calls = counted_engine(monkeypatch, graph=True)
    encoder_calls = []
    encoder_fn = engine.encoder_layers.layer_fn
    monkeypatch.setattr(engine.encoder_layers, "layer_fn", lambda *a: encoder_calls.append(1) or encoder_fn(*a))
    steps = decode(engine, clip)
    # per layer each piece of the prefill (chunked_prefill: a 758-token prompt, two clips' 375 audio
    # positions, as 246 and 512), then each step; the graphs' warm-up steps and captures: two for
    # each attention window (the prompt in 1,766 slots: windows of 1,024 and 1,766)
    assert calls == [246] * LAYERS + [512] * LAYERS + [1] * LAYERS * (steps + 2 * 2)
    assert len(encoder_calls) == engine.model.config.audio_config.num_hidden_layers
    # one graph for the decoder layers' step per attention window, one for each prefill piece's
    # shape, one for the encoder's layers: five whatever the layer counts
    assert engine.report()["graphs_compiled"] == 5


def test_without_a_graph_the_whole_step_is_compiled_once(clip, monkeypatch):
    engine, calls = counted_engine(monkeypatch, NO_PREFILL)
    decode(engine, clip)
    assert calls == []
    report = engine.report()
    assert report["compiled_scope"] == "step" and report["graphs_compiled"] == 1


@pytest.mark.slow
def test_where_the_step_compiles_whole_so_does_the_prefill(clip, monkeypatch):
    engine, calls = counted_engine(monkeypatch)  # every patch: compiled_prefill on, no graph
    decode(engine, clip)
    assert calls == [] and engine.report()["compiled_scope"] == "step"
    # the step at each attention window (1,024 and 1,766 slots), the prefill at each of its two
    # piece shapes (246 and 512 positions), the encoder's layer
    assert engine.report()["graphs_compiled"] == 5


def test_the_layers_scope_can_be_chosen_without_a_graph(clip, monkeypatch):
    engine, calls = counted_engine(monkeypatch, NO_PREFILL, "engine.compile_scope=layers")
    tokens, steps = transcribe(engine, clip)
    assert len(calls) == LAYERS * steps and engine.report()["graphs_compiled"] == 1
    eager = tiny_engine(
        "voxtral_patched",
        f"model.tiny.text_config.num_hidden_layers={LAYERS}",
        "engine.patches=[device_features,batched_encoder,merge_no_sync,static_cache,sync_free_loop]",
    )
    assert tokens == transcribe(eager, clip)[0]


def test_an_unknown_scope_is_refused_when_the_config_is_built():
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException) as refused:
        tiny_engine("voxtral_patched", "engine.compile_scope=model")
    assert "expected one of [auto, layers, step]" in str(refused.value.__cause__)


def test_without_the_patch_nothing_is_compiled():
    engine = tiny_engine("voxtral_patched", "engine.patches=[static_cache,sync_free_loop]")
    assert engine.report()["compiled_step_active"] is False and engine.report()["compiled_scope"] is None
