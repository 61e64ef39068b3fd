"""The speed benchmark command, as a CPU smoke run, and its bandwidth arithmetic."""

import subprocess
import sys

import pandas as pd
import pytest

from bench.config import REPO_DIR
from bench.engines.voxtral_patched import PATCHES


def test_decode_bytes_per_step_by_hand():
    from bench.engines.base import DecoderShape

    # one layer, hidden 2, 1 head of dim 2, 1 kv head, mlp 3, vocab 5
    shape = DecoderShape(layers=1, hidden=2, inner=3, heads=1, kv_heads=1, head_dim=2, vocab=5)
    # layer: q 4 + k,v 8 + o 4 + mlp 18 + norms 4 = 38; + final norm 2 + lm_head 10 = 50 weights
    # kv: 1 layer x 2 x 1 head x 2 dims x context 10 x 3 rows = 120 values
    assert shape.step_bytes(rows=3, context=10, bytes_per_value=2) == (50 + 120) * 2


def _shapes(scale: str):
    """Each model's decoder as its config at this scale declares it (as bench.speed reads a run's)."""
    from conftest import compose_config
    from omegaconf import OmegaConf

    from bench.engines import engine_class

    shapes = {}
    for engine, model in (("voxtral_patched", "voxtral_mini_3b"), ("whisper_patched", "whisper_large_v3")):
        cfg = compose_config(f"engine={engine}", f"model={model}").model
        arch = OmegaConf.merge(cfg.architecture, cfg.tiny) if scale == "tiny" else cfg.architecture
        shapes[model] = engine_class(engine).decoder_shape(OmegaConf.to_container(arch))
    return shapes


def test_the_step_bytes_of_both_full_size_decoders_by_hand():
    shapes = _shapes("full")
    # Voxtral-Mini-3B, per layer: q 3072x4096 + o 4096x3072 (25,165,824), k and v 3072x1024 each
    # (6,291,456), gate, up and down 3072x8192 each (75,497,472), 2 norms (6,144): 106,960,896;
    # x 30 layers, + the final norm (3,072) + lm_head 131,072 x 3,072 (402,653,184)
    voxtral = shapes["voxtral_mini_3b"]
    assert voxtral.weight_values() == 3_611_483_136
    # keys and values: 30 layers x 2 x 8 kv heads x 128 = 61,440 values a position, 122,880 bytes
    assert voxtral.step_bytes(rows=32, context=431, bytes_per_value=2) == 7_222_966_272 + 32 * 431 * 122_880
    # Whisper-large-v3, per layer: self q, k, v, o and cross q, o 1280x1280 (6 x 1,638,400), fc1
    # and fc2 1280x5120 (13,107,200), 3 norms (3,840): 22,941,440; x 32, + the final norm (1,280)
    # + the output projection 51,866 x 1,280 (66,388,480)
    whisper = shapes["whisper_large_v3"]
    assert whisper.weight_values() == 800_515_840
    # cross keys and values: 32 layers x 2 x 1,280 x 1,500 positions = 122,880,000 values a row;
    # self: 32 x 2 x 1,280 = 81,920 values a position
    assert whisper.cross_kv_values(rows=1) == 122_880_000
    assert whisper.step_bytes(rows=1, context=50, bytes_per_value=2) == 1_601_031_680 + 245_760_000 + 50 * 163_840


def test_the_step_bytes_of_both_tiny_decoders_by_hand():
    shapes = _shapes("tiny")
    # Voxtral tiny, per layer: q, o 64x64 (8,192), k, v 64x32 (4,096), MLP 3 x 64x128 (24,576),
    # norms 128: 36,992; x 2, + 64 + lm_head 131,072 x 64 (8,388,608)
    voxtral = shapes["voxtral_mini_3b"]
    assert voxtral.weight_values() == 8_462_656
    assert voxtral.step_bytes(rows=2, context=100, bytes_per_value=4) == 4 * (8_462_656 + 2 * 100 * 2 * 2 * 2 * 16)
    # Whisper tiny, per layer: self q, k, v, o and cross q, o 64x64 (24,576), fc1 and fc2 64x256
    # (32,768), norms 192: 57,536; x 2, + 64 + 51,866 x 64 (3,319,424)
    whisper = shapes["whisper_large_v3"]
    assert whisper.weight_values() == 3_434_560
    assert whisper.cross_kv_values(rows=3) == 3 * 2 * 2 * 64 * 1500
    assert whisper.step_bytes(rows=3, context=10, bytes_per_value=4) == 4 * (3_434_560 + 3 * (2 * 2 * 64) * (1500 + 10))


def test_the_ceiling_of_an_encoder_decoder_reads_its_cross_attention():
    import torch

    from bench.lab import ceiling

    shape = _shapes("tiny")["whisper_large_v3"]
    measured = ceiling.measure(shape, rows=2, device=torch.device("cpu"), dtype=torch.float32, replays=2)
    # every matrix once (weight_values less the norms), and 2 rows of cross keys and values
    norms = 2 * 3 * 64 + 64
    assert measured["weight_bytes"] == 4 * (shape.weight_values() - norms)
    assert measured["cross_kv_bytes"] == 4 * shape.cross_kv_values(rows=2)
    assert (
        measured["bytes"] == measured["weight_bytes"] + measured["cross_kv_bytes"]
        and measured["reads"] == ceiling.CROSS
    )
    # an entry measured before the cross-attention's reads were in it is no ceiling of Whisper's
    weights_only = {"seconds": 1e-3, "bytes": measured["weight_bytes"]}
    assert not ceiling.complete(weights_only, shape) and ceiling.complete(measured, shape)
    assert ceiling.complete(weights_only, _shapes("tiny")["voxtral_mini_3b"])


def test_the_voxtral_decoder_declares_its_shape_and_prompt():
    from conftest import compose_config

    from bench.engines import engine_class

    engine = engine_class("voxtral_patched")
    arch = compose_config("engine=voxtral_patched").model.architecture
    shape = engine.decoder_shape({"text_config": dict(arch.text_config)})
    assert (shape.layers, shape.hidden, shape.vocab) == (30, 3072, 131072)
    # <s> [INST] [BEGIN_AUDIO] 375 x [AUDIO] per 30 s [/INST] lang:en (3 tokens) [TRANSCRIBE]
    assert engine.context_tokens(30 * 16_000) == 375 + 8 and engine.context_tokens(31 * 16_000) == 750 + 8


@pytest.mark.slow
def test_speed_command_prints_both_tables(tmp_path, offline_env):
    out = subprocess.run(
        [sys.executable, "-m", "bench.speed", "--scale", "tiny", "--clip-seconds", "4",
         "--batch-sizes", "1", "2", "--engines", "voxtral_stock", "voxtral_patched",
         "--min-clips", "2", "--repeats", "1",
         "--ablation-batch-sizes", "2", "--quiet", "--out", str(tmp_path)],
        capture_output=True, text=True, env=offline_env, cwd=REPO_DIR, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "# Voxtral speed" in out.stdout and "# voxtral_patched ablation" in out.stdout
    speed = pd.read_csv(tmp_path / "speed.csv")
    assert sorted(zip(speed.engine, speed.batch, strict=True)) == [
        ("voxtral_patched", 1), ("voxtral_patched", 2), ("voxtral_stock", 1), ("voxtral_stock", 2)
    ]  # fmt: skip
    assert (speed["RTFx"] > 0).all() and (speed["decode GB/s"] > 0).all()
    assert ((speed["% of copy BW"] > 0) & (speed["% of copy BW"] < 100)).all()
    ablation = pd.read_csv(tmp_path / "ablation.csv")
    # on the CPU every patch is ablated but cuda_graph, inert here
    assert list(ablation["removed patch"][1:]) == sorted(p for p in PATCHES if p != "cuda_graph")
    assert ablation["vs all on"].iloc[0] == 1.0
    assert (ablation["cold start s"] > 0).all()
    runs = tmp_path / "runs" / "synthetic"
    assert (runs / "voxtral_stock_b1" / "summary.json").exists()
    assert (runs / "voxtral_stock_b1" / "profile.md").exists()  # profiled at batch 1
    assert not (runs / "voxtral_stock_b2" / "profile.md").exists()
    tables = subprocess.run(
        [sys.executable, "-m", "bench.speed", "--tables-only", "--batch-sizes", "1", "2",
         "--engines", "voxtral_stock", "voxtral_patched", "--ablation-batch-sizes", "2", "--out", str(tmp_path)],
        capture_output=True, text=True, env=offline_env, cwd=REPO_DIR, timeout=600,
    )  # fmt: skip
    assert tables.returncode == 0, tables.stderr[-3000:]
    assert pd.read_csv(tmp_path / "speed.csv").equals(speed)  # the same table from the run folders alone


@pytest.mark.slow
def test_speed_covers_whisper_with_its_ablation_and_the_ceiling(tmp_path, offline_env):
    import json

    from bench.engines.whisper_patched import PATCHES as WHISPER_PATCHES

    out = subprocess.run(
        [sys.executable, "-m", "bench.speed", "--model", "whisper_large_v3", "--scale", "tiny",
         "--clip-seconds", "4", "--batch-sizes", "1", "--engines", "openai_whisper", "whisper_patched",
         "--min-clips", "2", "--repeats", "1", "--quiet", "--out", str(tmp_path)],
        capture_output=True, text=True, env=offline_env, cwd=REPO_DIR, timeout=900,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "# Whisper speed" in out.stdout and "# whisper_patched ablation" in out.stdout
    speed = pd.read_csv(tmp_path / "speed.csv")
    assert sorted(speed.engine) == ["openai_whisper", "whisper_patched"]
    assert ((speed["% of copy BW"] > 0) & (speed["% of copy BW"] < 100)).all()
    # the ceiling: every decoder matrix of this model read once on this device, measured here
    ceilings = json.loads((tmp_path / "ceilings.json").read_text())
    assert sorted(ceilings) == ["stream/float32/b1", "whisper_large_v3/tiny/float32/b1"]
    limit = ceilings["whisper_large_v3/tiny/float32/b1"]
    assert limit["matrices"] == 2 * 8 + 1 and limit["reads"] == "weights+cross_kv"  # 2 layers of 8, and proj_out
    assert (speed["ceiling ms/step"] > 0).all()
    assert (speed["step / ceiling"] == speed["ms/step"] / speed["ceiling ms/step"]).all()
    # the roofline: the step's bytes (weights, cross and self keys and values) at the stream bandwidth
    n_bytes = speed["decode GB/s"] * 1e9 * speed["ms/step"] / 1e3
    roofline = 1e3 * n_bytes / ceilings["stream/float32/b1"]["bytes_per_s"]
    assert ((speed["roofline ms/step"] - roofline).abs() < 1e-9 * roofline).all()
    assert (speed["step / roofline"] == speed["ms/step"] / speed["roofline ms/step"]).all()
    ablation = pd.read_csv(tmp_path / "ablation.csv")
    assert list(ablation["removed patch"][1:]) == sorted(p for p in WHISPER_PATCHES if p != "cuda_graph")
    assert ablation["vs all on"].iloc[0] == 1.0
