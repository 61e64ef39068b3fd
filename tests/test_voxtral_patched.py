"""voxtral_patched gives voxtral_stock's tokens: all patches on, and each one off alone.

Tiny scale, float32, CPU, every clip of the sample dataset, batch 1 and batch 4.
"""

import pytest
import torch
from conftest import compose_config

from bench.clock import Clock
from bench.data import load_utterances
from bench.engines.voxtral_patched import PATCHES, VoxtralPatched
from bench.engines.voxtral_stock import VoxtralStock
from bench.errors import BenchError
from bench.measure import make_batches

CPU = torch.device("cpu")


def make_engine(engine_class, name, *overrides):
    cfg = compose_config(f"engine={name}", "model.weights=random", "model.scale=tiny", *overrides)
    engine = engine_class(cfg.engine, cfg.model, CPU, torch.float32, "en")
    engine.load()
    return engine


@pytest.fixture(scope="module")
def sample():
    return load_utterances(compose_config("dataset=sample").dataset, progress=False)


@pytest.fixture(scope="module")
def stock():
    return make_engine(VoxtralStock, "voxtral_stock")


def tokens_by_clip(engine, sample, batch_size, targets):
    tokens = {}
    for batch in make_batches(sample, batch_size):
        with Clock(CPU) as clock:
            out = engine.transcribe([u.audio for u in batch], [targets[u.id] for u in batch], clock)
        tokens.update({u.id: t.tokens for u, t in zip(batch, out, strict=True)})
    return tokens


@pytest.fixture(scope="module")
def expected(stock, sample):
    targets = {u.id: stock.count_target_tokens(u.reference) for u in sample}
    return targets, {size: tokens_by_clip(stock, sample, size, targets) for size in (1, 4)}


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [1, 4])
@pytest.mark.parametrize("off", [None, *PATCHES])
def test_tokens_equal_stock(off, batch_size, expected, sample):
    targets, stock_tokens = expected
    patches = [p for p in PATCHES if p != off]
    engine = make_engine(VoxtralPatched, "voxtral_patched", f"engine.patches=[{','.join(patches)}]")
    got = tokens_by_clip(engine, sample, batch_size, targets)
    assert got == stock_tokens[batch_size]
    assert all(len(got[u.id]) == targets[u.id] for u in sample)  # length-matched exactly


def test_the_default_config_switches_every_patch_on():
    cfg = compose_config("engine=voxtral_patched")
    assert list(cfg.engine.patches) == list(PATCHES)


def test_unknown_patch_is_named():
    with pytest.raises(BenchError, match="unknown patch"):
        make_engine(VoxtralPatched, "voxtral_patched", "engine.patches=[static_cache,warp_drive]")


def test_features_on_the_device_equal_the_processors(sample):
    """device_features reproduces the processor's log-mel, 16-bit WAV rounding included."""
    engine = make_engine(VoxtralPatched, "voxtral_patched")
    for clip in (sample[0], sample[-1]):  # two chunks, one chunk
        inputs = engine.processor.apply_transcription_request(
            language="en", audio=[clip.audio], format=["wav"], model_id="x", sampling_rate=16_000
        )
        ours = engine._log_mel(torch.from_numpy(clip.audio))
        assert ours.shape == inputs["input_features"].shape
        torch.testing.assert_close(ours, inputs["input_features"], rtol=0, atol=1e-5)


def test_phases_and_report(sample):
    engine = make_engine(VoxtralPatched, "voxtral_patched")
    clips = sample[-3:]
    with Clock(CPU) as clock:
        engine.transcribe([c.audio for c in clips], [5, 6, 7], clock)
    assert {"h2d", "features", "encode", "merge", "prefill", "decode", "detokenise"} <= set(clock.phases)
    report = engine.report()
    assert report["patches"] == sorted(PATCHES) and report["cuda_graph_active"] is False  # CPU
    assert report["eos_check_every"] == 8
