"""The speed benchmark command, as a CPU smoke run, and its bandwidth arithmetic."""

import subprocess
import sys

import pandas as pd
import pytest

from bench.config import REPO_DIR
from bench.engines.voxtral_patched import PATCHES
from bench.lab.speed import decode_bytes_per_step


def test_decode_bytes_per_step_by_hand():
    from bench.engines.base import DecoderShape

    # one layer, hidden 2, 1 head of dim 2, 1 kv head, mlp 3, vocab 5
    shape = DecoderShape(layers=1, hidden=2, inner=3, heads=1, kv_heads=1, head_dim=2, vocab=5)
    # layer: q 4 + k,v 8 + o 4 + mlp 18 + norms 4 = 38; + final norm 2 + lm_head 10 = 50 weights
    # kv: 1 layer x 2 x 1 head x 2 dims x context 10 x 3 rows = 120 values
    assert decode_bytes_per_step(shape, rows=3, context=10, bytes_per_value=2) == (50 + 120) * 2


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
    assert list(ceilings) == ["whisper_large_v3/tiny/float32/b1"]
    assert ceilings["whisper_large_v3/tiny/float32/b1"]["matrices"] == 2 * 8 + 1  # 2 layers of 8, and proj_out
    assert (speed["ceiling ms/step"] > 0).all()
    assert (speed["step / ceiling"] == speed["ms/step"] / speed["ceiling ms/step"]).all()
    ablation = pd.read_csv(tmp_path / "ablation.csv")
    assert list(ablation["removed patch"][1:]) == sorted(p for p in WHISPER_PATCHES if p != "cuda_graph")
    assert ablation["vs all on"].iloc[0] == 1.0
