"""Interrupted runs lose nothing: progress is saved after every batch, atomically, and
run.resume=true continues where a killed run stopped, measuring no utterance twice."""

import json
import signal
import subprocess
import time

import pandas as pd
import pytest
from conftest import bench_command, compose_config

import bench.runner
from bench.config import REPO_DIR
from bench.errors import BenchError

N_CLIPS = 40
RUN = [
    "engine=whisper_large_v3",
    "model=whisper_large_v3",
    "model.weights=random",
    "model.scale=tiny",
    "dataset=synthetic",
    f"dataset.n_clips={N_CLIPS}",
    "dataset.min_seconds=1",
    "dataset.max_seconds=4",
    "run.batch_size=1",
    "run.progress=false",
]


def batches_done(folder) -> int:
    try:
        return len(json.loads((folder / "progress.json").read_text())["measurements"][0]["done"])
    except (FileNotFoundError, json.JSONDecodeError):  # not written yet (a rename makes it whole)
        return 0


def test_a_run_killed_mid_way_resumes_with_exactly_one_row_per_utterance(tmp_path, offline_env):
    process = subprocess.Popen(
        bench_command(*RUN, f"hydra.run.dir={tmp_path}"),
        cwd=REPO_DIR,
        env=offline_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    while batches_done(tmp_path) < 5 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = batches_done(tmp_path)
    assert 5 <= killed_at < N_CLIPS, "the run must be killed mid-way"
    assert not (tmp_path / "summary.json").exists()
    # what was saved is whole and readable: the batches done so far, one row per utterance
    partial = pd.read_parquet(tmp_path / "utterances.parquet")
    assert len(partial) == N_CLIPS and (partial.status == "ok").sum() >= killed_at

    summary = bench.runner.run(compose_config(*RUN, "run.resume=true"), tmp_path)
    rows = pd.read_parquet(tmp_path / "utterances.parquet")
    batches = pd.read_parquet(tmp_path / "batches.parquet")
    assert len(rows) == N_CLIPS and rows.id.is_unique and (rows.status == "ok").all()
    assert sorted(batches.batch) == list(range(N_CLIPS))  # each batch measured once
    assert (rows.n_tokens == rows.target_tokens).all()
    assert summary["resumed"] == 1 and summary["resume_sessions"][0]["batches_done_before"] >= killed_at
    assert summary["n_utterances"] == N_CLIPS and summary["n_failed"] == 0
    assert summary["audio_seconds"] == pytest.approx(rows.duration_s.sum())


def test_resume_refuses_other_settings_and_a_fresh_run_refuses_a_used_folder(tmp_path):
    short = [*RUN, "dataset.n_clips=3"]
    bench.runner.run(compose_config(*short), tmp_path)
    with pytest.raises(BenchError, match="already holds a run.*run.resume=true"):
        bench.runner.run(compose_config(*short), tmp_path)
    with pytest.raises(BenchError, match="settings differ from the run's: run.batch_size"):
        bench.runner.run(compose_config(*short, "run.batch_size=2", "run.resume=true"), tmp_path)
    with pytest.raises(BenchError, match="other utterances"):
        bench.runner.run(compose_config(*RUN, "dataset.n_clips=4", "run.resume=true"), tmp_path)
    # resuming a finished run measures nothing again and keeps its rows
    summary = bench.runner.run(compose_config(*short, "run.resume=true"), tmp_path)
    assert summary["resumed"] == 1 and len(pd.read_parquet(tmp_path / "batches.parquet")) == 3
