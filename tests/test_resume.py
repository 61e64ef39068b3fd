"""Interrupted runs lose little: progress is saved atomically as batches finish (at a bounded
cost), and run.resume=true continues where a killed run stopped, measuring no utterance twice."""

import copy
import json
import signal
import subprocess
import time

import pandas as pd
import pytest
from conftest import bench_command, compose_config

import bench.pipeline.runner
from bench.config import REPO_DIR
from bench.data import Failure
from bench.engines.base import Transcript
from bench.errors import BenchError
from bench.pipeline import progress
from bench.pipeline.measurement import BatchRecord, Measurement
from bench.pipeline.progress import Saver

N_CLIPS = 40
RUN = [
    "engine=openai_whisper",
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


@pytest.mark.slow
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

    summary = bench.pipeline.runner.run(compose_config(*RUN, "run.resume=true"), tmp_path)
    rows = pd.read_parquet(tmp_path / "utterances.parquet")
    batches = pd.read_parquet(tmp_path / "batches.parquet")
    assert len(rows) == N_CLIPS and rows.id.is_unique and (rows.status == "ok").all()
    assert sorted(batches.batch) == list(range(N_CLIPS))  # each batch measured once
    assert (rows.n_tokens == rows.target_tokens).all()
    assert summary.resumed == 1 and summary.resume_sessions[0]["batches_done_before"] >= killed_at
    assert summary.n_utterances == N_CLIPS and summary.n_failed == 0
    assert summary.audio_seconds == pytest.approx(rows.duration_s.sum())


def test_resume_refuses_other_settings_and_a_fresh_run_refuses_a_used_folder(tmp_path):
    short = [*RUN, "dataset.n_clips=3"]
    bench.pipeline.runner.run(compose_config(*short), tmp_path)
    with pytest.raises(BenchError, match="already holds a run.*run.resume=true"):
        bench.pipeline.runner.run(compose_config(*short), tmp_path)
    with pytest.raises(BenchError, match="settings differ from the run's: run.batch_size"):
        bench.pipeline.runner.run(compose_config(*short, "run.batch_size=2", "run.resume=true"), tmp_path)
    with pytest.raises(BenchError, match="other utterances"):
        bench.pipeline.runner.run(compose_config(*RUN, "dataset.n_clips=4", "run.resume=true"), tmp_path)


def test_resuming_a_finished_run_leaves_it_as_it_is(tmp_path, monkeypatch, capsys):
    short = [*RUN, "dataset.n_clips=3"]
    first = bench.pipeline.runner.run(compose_config(*short), tmp_path)
    files = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    def no_load(engine):
        raise AssertionError("a finished run was loaded again")

    monkeypatch.setattr("bench.engines.openai_whisper.OpenAIWhisper.load", no_load)
    summary = bench.pipeline.runner.run(compose_config(*short, "run.resume=true"), tmp_path)
    assert summary == first and summary.resumed == 0
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == files
    assert "is complete" in capsys.readouterr().out


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def record(index: int) -> BatchRecord:
    return BatchRecord(0, index, [f"u{index}"], 1.0, 0.05, 0.04, 3, {})


def finish_batch(m: Measurement, index: int) -> None:
    m.batches.append(record(index))
    m.transcripts[f"u{index}"] = Transcript("a b c", 3, [1, 2, 3])
    m.latency_s[f"u{index}"] = 0.05
    m.done.append([0, index])


def test_saving_keeps_to_a_small_share_of_a_long_run():
    # 7860 batches of 50 ms (LibriSpeech test-clean x 3 repeats at batch 1); a save costs
    # 0.115 ms per batch saved, about what progress.json costs at that size on the CPU machine
    clock, m, saved = FakeClock(), Measurement(1.0, 1.0, False), []

    def save(measurements):
        saved.append(len(measurements[0].batches))
        clock.now += 0.000115 * len(measurements[0].batches)

    saver = Saver(save, clock)
    for index in range(7860):
        clock.now += 0.05
        finish_batch(m, index)
        saver([m])
    saver.flush()
    assert saved[:20] == list(range(1, 21))  # while a save is cheap, after every batch
    assert saved[-1] == 7860  # the end is always saved
    saving = 0.000115 * sum(saved)
    # ~5% of the run; a save after every batch would spend 0.115 ms x (1 + ... + 7860) = ~3550 s,
    # nine times the 393 s of measuring
    assert saving / clock.now < 1 / (1 + progress.COST_FACTOR) + 0.01


def test_an_error_mid_batch_saves_the_state_as_of_the_last_finished_batch():
    clock, m, saved = FakeClock(), Measurement(1.0, None, True), []

    def save(measurements):
        saved.append(copy.deepcopy(measurements[0]))
        clock.now += 1.0  # an expensive save: the next one is not due for 20 s

    with pytest.raises(RuntimeError), Saver(save, clock) as saver:
        finish_batch(m, 0)
        m.cold_start_s = 0.05
        saver([m])  # saved
        finish_batch(m, 1)
        m.failures.append(Failure("u9", "RuntimeError: bad clip"))
        saver([m])  # not due: unsaved
        # half a batch, then an error: its first half's record must not reach the disk
        m.batches.append(record(2))
        m.transcripts["u2"] = Transcript("x", 1, [7])
        m.oom_splits.append({"where": "batch 2 of repeat 0", "size": 2, "into": [1, 1]})
        raise RuntimeError("out of memory on the second half")
    assert len(saved) == 2
    last = saved[-1]
    assert [b.index for b in last.batches] == [0, 1] and last.done == [[0, 0], [0, 1]]
    assert list(last.transcripts) == ["u0", "u1"] and list(last.latency_s) == ["u0", "u1"]
    assert [f.id for f in last.failures] == ["u9"] and last.oom_splits == [] and last.cold_start_s == 0.05
    assert len(m.batches) == 3  # the live measurement is left as it is
