"""profile=true on the CPU at tiny scale: phases, counts, and the merge hypothesis as a test."""

import json
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import bench_command, compose_config

from bench.config import REPO_DIR
from bench.engines.voxtral_patched import VoxtralPatched
from bench.engines.voxtral_stock import VoxtralStock
from bench.profile import profile_batch

CPU = torch.device("cpu")


def make_engine(engine_class, name, *overrides):
    cfg = compose_config(f"engine={name}", "model.weights=random", "model.scale=tiny", *overrides)
    engine = engine_class(cfg.engine, cfg.model, CPU, torch.float32, "en")
    engine.load()
    return engine


def clip(seconds: float) -> np.ndarray:
    return (0.1 * np.random.default_rng(1).standard_normal(int(16_000 * seconds))).astype(np.float32)


@pytest.fixture(scope="module")
def engines():
    return {
        "voxtral_stock": make_engine(VoxtralStock, "voxtral_stock"),
        "voxtral_patched": make_engine(VoxtralPatched, "voxtral_patched", "engine.max_chunks=4"),
    }


@pytest.mark.parametrize("name", ["voxtral_stock", "voxtral_patched"])
def test_merge_kernels_do_not_grow_with_audio_tokens(engines, name):
    """The "375 individual kernels" claim: 1, 2 and 4 chunks (375 to 1500 placeholders) launch the same count."""
    engine = engines[name]
    counts = []
    for seconds in (10, 50, 110):  # 1, 2 and 4 chunks of 30 s
        result, _ = profile_batch(engine, [clip(seconds)], [3])
        counts.append(result.summary["merge_kernels"])
    assert counts[0] > 0 and counts == [counts[0]] * 3


def test_patched_makes_fewer_host_syncs_per_decode_step_than_stock(engines):
    per_step = {}
    for name, engine in engines.items():
        engine.transcribe([clip(5)], [40], _warm_clock())
        result, _ = profile_batch(engine, [clip(5), clip(8)], [40, 40])
        assert result.summary["decode_steps"] >= 39
        per_step[name] = result.summary["decode_host_syncs_per_step"]
    assert per_step["voxtral_stock"] >= 1  # generate reads "all finished?" back every step
    assert per_step["voxtral_patched"] <= 0.2  # read back every eos_check_every (8) steps
    assert per_step["voxtral_patched"] < per_step["voxtral_stock"]


def _warm_clock():
    from bench.clock import Clock

    return Clock(CPU).__enter__()


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["voxtral_stock", "voxtral_patched", "voxtral_compile", "whisper_large_v3"])
def test_profile_mode_writes_trace_table_and_verdict(engine, tmp_path, offline_env):
    args = [f"engine={engine}", "model.weights=random", "model.scale=tiny", "run.progress=false", "run.limit=2",
            "run.batch_size=2", "profile=true", f"hydra.run.dir={tmp_path}"]  # fmt: skip
    out = subprocess.run(
        bench_command(*args), capture_output=True, text=True, env=offline_env, cwd=REPO_DIR, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "# Profile of one warm batch" in out.stdout
    phases = pd.read_parquet(tmp_path / "profile_phases.parquet")
    expected = {"h2d", "features", "decode"} if engine != "voxtral_compile" else {"h2d", "features", "generate"}
    assert expected <= set(phases.phase)
    assert (phases.kernels > 0).all() and (phases.wall_ms > 0).all()
    trace = json.loads((tmp_path / "profile_trace.json").read_text())
    assert any(e.get("name", "").startswith("phase:") for e in trace["traceEvents"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["profile"]["decode_steps"] > 0
