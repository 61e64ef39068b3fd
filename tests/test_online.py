"""bench.serve as a real process on 127.0.0.1, measured by bench.load: answers equal the offline
engine's, hostile input is refused with the right status while good requests go on, a killed
load client resumes, and the arithmetic of a load run's folder."""

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from conftest import compose_config

from bench.config import REPO_DIR
from bench.online.load_folder import intervals
from bench.online.serve_process import free_port, stop, wait_until_healthy
from bench.stats import percentile_ci

REAL = ["model=whisper_tiny_en", "dataset=sample"]  # real tiny.en weights, shipped with the real extra
# the warm-up compiles every serving shape: minutes on a 2-core CPU with a cold Inductor cache,
# over 300 s in CI beside other test workers (stop 57)
READY_S = 900


def start_server(env, *overrides):
    port = free_port()
    command = [sys.executable, "-m", "bench.serve", *overrides, f"serve.port={port}"]
    process = subprocess.Popen(command, env=env, cwd=REPO_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, process, timeout=READY_S)
    except Exception:
        process.kill()
        raise AssertionError(process.stdout.read().decode()[-3000:]) from None
    return process, url


@pytest.fixture(scope="module")
def env():
    return {**os.environ, "PYTHONPATH": str(REPO_DIR), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
            "ORT_DISABLE_TELEMETRY": "1"}  # fmt: skip


@pytest.fixture(scope="module")
def patched_server(env):
    """whisper_patched (it streams token by token) on real weights, batches of up to 4."""
    process, url = start_server(env, "engine=whisper_patched", *REAL, "run.batch_size=4", "serve.max_queue=32")
    yield url
    assert stop(process) == 0


@pytest.fixture(scope="module")
def offline_transcripts():
    """The same engine, offline in this process, on each of the 8 clips (shaped as the server's)."""
    import torch

    from bench.data import load_utterances
    from bench.engines import engine_class
    from bench.pipeline.clock import Clock

    cfg = compose_config("engine=whisper_patched", *REAL, "run.limit=8")
    engine = engine_class("whisper_patched")(cfg.engine, cfg.model, torch.device("cpu"), torch.float32, "en")
    engine.load()
    engine.plan([[16_000] * 4])  # as bench.serve plans: batches of run.batch_size rows
    utterances = load_utterances(cfg.dataset, 8, progress=False)
    return {u.id: engine.transcribe([u.audio], None, Clock(torch.device("cpu")))[0].text for u in utterances}


def run_load(env, *args):
    command = [sys.executable, "-m", "bench.load", *args]
    return subprocess.run(command, env=env, cwd=REPO_DIR, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_load_at_concurrency_1_4_16_matches_the_offline_engine(patched_server, offline_transcripts, env, tmp_path):
    out = run_load(env, "--url", patched_server, "--concurrency", "1,4,16", "--requests", "16", "--stream",
                   "--out", str(tmp_path), *REAL, "run.limit=8")  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| concurrency | requests | failed | RTFx |" in out.stdout  # the table against concurrency
    for level in (1, 4, 16):
        folder = tmp_path / f"c{level}"
        summary = json.loads((folder / "summary.json").read_text())
        rows = pd.read_parquet(folder / "utterances.parquet")
        assert summary["n_utterances"] == 16 and summary["n_failed"] == 0 and (rows.http_status == 200).all()
        assert summary["batch_size"] == level and summary["engine"] == "load:bench:whisper_patched"
        assert {rows.hypothesis[i] for i in rows.index} and all(
            rows.hypothesis[i] == offline_transcripts[rows.id[i]] for i in rows.index
        ), "a served transcript differs from the offline engine's"
        assert 0 < summary["latency_p50"] <= summary["latency_p90"] <= summary["latency_p99"]
        online = summary["online"]
        low, high = online["latency_ci"]["p50"]
        assert low <= summary["latency_p50"] <= high
        # streamed: every answer's first text arrived before its end (no delta would leave it null)
        assert rows.ttft_s.notna().all() and (rows.ttft_s < rows.latency_s).all()
        assert summary["rtfx"] > 0 and summary["wer"] is not None
        # the server's account of the level (its /metrics): batches of at most 4 holding the
        # 16 requests, none at concurrency 1 holding more than one, and no compile after start-up
        sizes = {int(k): n for k, n in online["batch_sizes"].items()}
        assert sum(size * n for size, n in sizes.items()) == 16 and max(sizes) <= min(level, 4)
        assert online["compiles_after_startup"] == 0 and online["graph_captures_after_startup"] == 0
        assert online["uncompiled_decodes_after_startup"] == 0  # every shape met was warmed: none ran slower
        # throughput: wall time over answered audio, its rows summing to the wall time
        batches = pd.read_parquet(folder / "batches.parquet")
        assert batches.audio_s.sum() == pytest.approx(rows.duration_s.sum())
        assert summary["rtfx"] == pytest.approx(batches.audio_s.sum() / batches.processing_s.sum())
    # bench.report and bench.gate read these folders
    report = subprocess.run([sys.executable, "-m", "bench.report", str(tmp_path), "--out", str(tmp_path / "r")],
                            env=env, cwd=REPO_DIR, capture_output=True, text=True)  # fmt: skip
    assert report.returncode == 0, report.stderr
    assert "TTFT p50 s" in report.stdout and (tmp_path / "r" / "rtfx_vs_batch.png").exists()
    from bench.analysis.gate import main as gate

    baseline = tmp_path / "baseline.json"
    assert gate(["--write-baseline", str(tmp_path / "c4"), "--out", str(baseline)]) == 0
    assert gate(["--baseline", str(baseline), "--candidate", str(tmp_path / "c4")]) == 0  # itself: no regression
    assert "latency_s" in json.loads(baseline.read_text())["runs"][0]


def _wav(audio, rate=16_000) -> bytes:
    out = io.BytesIO()
    sf.write(out, audio, rate, format="WAV", subtype="FLOAT")
    return out.getvalue()


@pytest.mark.slow
def test_hostile_input_is_refused_while_a_good_request_is_answered(env):
    process, url = start_server(env, "engine=openai_whisper", *REAL, "run.batch_size=1", "serve.max_queue=2",
                                "serve.max_upload_mb=0.5")  # fmt: skip
    try:
        speech = sf.read(io.BytesIO(_wav(np.zeros(8000, np.float32))))[0]  # a valid clip, half a second
        good = ("clip.wav", _wav(speech), "audio/wav")
        endpoint = f"{url}/v1/audio/transcriptions"

        async def hammer():
            async with httpx.AsyncClient(timeout=120) as client:
                post = lambda files, **data: client.post(endpoint, files={"file": files}, data=data)  # noqa: E731
                hostile = [
                    post(("x.wav", b"not audio at all", "audio/wav")),  # undecodable
                    post(("x.wav", _wav(np.zeros(0, np.float32)), "audio/wav")),  # empty
                    post(("x.wav", b"\0" * 600_000, "audio/wav")),  # over 0.5 MB
                    post(good, model="gpt-4o-transcribe"),  # another model
                ]
                return await asyncio.gather(post(good), *hostile, *[post(good) for _ in range(8)])

        first, undecodable, empty, big, unknown, *burst = asyncio.run(hammer())
        assert first.status_code in (200, 503)
        assert undecodable.status_code == 400 and "could not decode" in undecodable.json()["error"]["message"]
        assert empty.status_code == 400 and "zero-length" in empty.json()["error"]["message"]
        assert big.status_code == 413 and unknown.status_code == 404
        codes = [r.status_code for r in [first, *burst]]
        assert set(codes) == {200, 503} and codes.count(200) >= 2  # a queue of 2: some refused, none lost
        refused = next(r for r in burst if r.status_code == 503)
        assert refused.headers["retry-after"] == "1"
        assert httpx.post(endpoint, files={"file": good}, timeout=120).status_code == 200  # still serving
        # graceful shutdown: a request accepted before SIGTERM is still answered. It must be in the
        # server (accepted, not answered: /health's pending) when the signal goes, and its answer
        # must come after the signal: one that ended first would prove nothing
        noise = io.BytesIO()  # 15 s in 16-bit PCM: under serve.max_upload_mb=0.5, and a second or more of work
        sf.write(noise, np.random.default_rng(1).normal(0, 0.05, 15 * 16_000), 16_000, format="WAV", subtype="PCM_16")
        long = ("long.wav", noise.getvalue(), "audio/wav")
        answers = []

        def send():
            response = httpx.post(endpoint, files={"file": long}, timeout=120)
            answers.append((response, time.monotonic()))

        sender = threading.Thread(target=send)
        sender.start()
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/health", timeout=10).json()["pending"] < 1:
            assert not answers and time.monotonic() < deadline, f"not pending: {answers[:1]}"
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        sender.join()
        response, answered = answers[0]
        assert response.status_code == 200 and answered > signalled and process.wait(timeout=60) == 0
    finally:
        stop(process)


@pytest.mark.slow
def test_a_killed_load_client_leaves_a_folder_that_resumes(patched_server, env, tmp_path):
    args = ["--url", patched_server, "--concurrency", "1", "--requests", "12", "--out", str(tmp_path), *REAL,
            "run.limit=8"]  # fmt: skip
    client = subprocess.Popen([sys.executable, "-m", "bench.load", *args], env=env, cwd=REPO_DIR,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    log = tmp_path / "c1" / "requests.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and (not log.exists() or log.read_text().count('"i":') < 3):
        time.sleep(0.2)
    client.kill()
    client.wait()
    answered = log.read_text().count('"i":')
    assert 3 <= answered < 12 and not (tmp_path / "c1" / "summary.json").exists()
    again = run_load(env, *args)
    assert again.returncode == 2 and "--resume" in again.stderr  # not measured over by accident
    resumed = run_load(env, *args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"{answered} requests were answered before" in resumed.stdout
    summary = json.loads((tmp_path / "c1" / "summary.json").read_text())
    rows = pd.read_parquet(tmp_path / "c1" / "utterances.parquet")
    assert summary["n_utterances"] == 12 and sorted(rows.request) == list(range(12))
    assert len(summary["online"]["sessions"]) == 2


def test_throughput_rows_are_blocks_of_answers_summing_to_the_wall_time():
    sessions = [{"started": 100.0}, {"started": 200.0}]
    records = [  # two sessions; within each, answers in the order they ended
        {"sent": 100.1, "ended": 101.0, "audio_s": 2.0, "status": 200},
        {"sent": 100.2, "ended": 101.0, "audio_s": 3.0, "status": 200},
        {"sent": 101.0, "ended": 102.5, "audio_s": 4.0, "status": 503},  # refused: no audio answered
        {"sent": 200.5, "ended": 203.0, "audio_s": 1.0, "status": 200},
    ]
    assert intervals(records, sessions, block=2) == [(1.0, 5.0), (1.5, 0.0), (3.0, 1.0)]
    assert intervals(records, sessions, block=1) == [(1.0, 2.0), (0.0, 3.0), (1.5, 0.0), (3.0, 1.0)]


def test_percentile_interval_holds_the_percentile():
    values = np.random.default_rng(0).exponential(1.0, 500)
    low, high = percentile_ci(values, 50)
    assert low < np.percentile(values, 50) < high and high - low < 0.3
    assert percentile_ci([1.0], 50) is None


def test_streamed_events_of_openai_and_vllm_read_alike():
    from bench.online.load import _read_events

    class Response:
        def __init__(self, lines):
            self.lines = lines

        async def aiter_lines(self):
            for line in self.lines:
                yield line

    openai = ['data: {"type": "transcript.text.delta", "delta": "Hello"}', "",
              'data: {"type": "transcript.text.delta", "delta": " world"}',
              'data: {"type": "transcript.text.done", "text": "Hello world"}', "data: [DONE]"]  # fmt: skip
    vllm = ['data: {"object": "transcription.chunk", "choices": [{"delta": {"content": "Hello"}}]}',
            'data: {"object": "transcription.chunk", "choices": [{"delta": {"content": " world"}}]}',
            "data: [DONE]"]  # fmt: skip
    for lines in (openai, vllm):
        text, first = asyncio.run(_read_events(Response(lines), time.perf_counter()))
        assert text == "Hello world" and first is not None and first >= 0
    # the whole text in the closing event alone: no first text to time, so none is made up
    only_done = ['data: {"type": "transcript.text.done", "text": "Hello world"}', "data: [DONE]"]
    assert asyncio.run(_read_events(Response(only_done), time.perf_counter())) == ("Hello world", None)


def test_goodput_counts_every_request_sent_and_its_interval_is_wilsons():
    from bench.online.load_folder import goodput, ttft_note

    rows = pd.DataFrame({"status": ["ok", "ok", "ok", "failed", "ok"], "latency_s": [0.5, 1.0, 1.5, 0.1, 3.0]})
    good = goodput(rows, 1.0)
    # 0.5 and 1.0 are within 1 s; the refused request's 0.1 s is not an answer
    assert (good["good"], good["requests"], good["share"]) == (2, 5, 0.4)
    # Wilson's 95% interval for 2 of 5, worked by hand: centre (0.4 + z^2/10) / (1 + z^2/5),
    # half-width z * sqrt(0.4 * 0.6 / 5 + z^2 / 100) / (1 + z^2/5), z = 1.95996
    assert good["ci"] == pytest.approx((0.1176, 0.7693), abs=1e-4)
    assert goodput(rows, None) is None
    assert ttft_note(0, 5, streamed=False).startswith("not measured")
    assert ttft_note(3, 5, streamed=True).startswith("over the 3 of 5 answers")
    assert ttft_note(5, 5, streamed=True) is None


def test_loading_an_alias_records_what_serves_it(monkeypatch):
    """--model whisper-1 asks for the alias; the run still records the engine, weights and
    hardware the served model's card gives (the alias card only names its root)."""
    from bench.online.load import served_model

    cards = [{"id": "whisper_tiny_en", "owned_by": "bench:whisper_patched", "bench": {"weights": "pretrained"}},
             {"id": "whisper-1", "owned_by": "bench:whisper_patched", "root": "whisper_tiny_en"}]  # fmt: skip

    class Answer:
        def json(self):
            return {"data": cards}

    monkeypatch.setattr(httpx, "get", lambda url, timeout: Answer())
    card = served_model("http://server", "whisper-1")
    assert card["id"] == "whisper-1" and card["bench"] == {"weights": "pretrained"}
    assert served_model("http://server", None)["id"] == "whisper_tiny_en"
