"""A Hub that does not answer is found out with one request, and the run goes offline."""

import http.server
import os
import subprocess
import sys
import threading

import pytest
from conftest import bench_command, compose_config, tiny_engine

from bench.config import REPO_DIR
from bench.host import hub_access

CLOSED_PORT = "http://127.0.0.1:9"  # nothing listens on the discard port


@pytest.fixture
def answering_endpoint():
    """A local server that refuses every HEAD with 404 (an answer all the same), counting them."""
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            seen.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", seen
    server.shutdown()


def test_an_answer_of_any_status_means_reachable_and_a_refused_connection_does_not(answering_endpoint):
    endpoint, seen = answering_endpoint
    assert hub_access.unreachable_reason(endpoint) is None and seen == ["/"]
    reason = hub_access.unreachable_reason(CLOSED_PORT)
    assert reason is not None and "refused" in reason.lower()


def test_only_what_would_be_fetched_from_the_hub_is_probed_for(tmp_path):
    def references(*overrides):
        return hub_access.hub_references(compose_config(*overrides))

    assert references("engine=voxtral_stock", "dataset=sample") == ["mistralai/Voxtral-Mini-3B-2507"]
    assert references("engine=voxtral_stock", "dataset=librispeech_test_clean") == [
        "mistralai/Voxtral-Mini-3B-2507",
        "openslr/librispeech_asr",
    ]
    assert references("engine=voxtral_stock", f"model.id={tmp_path}") == []  # a local folder
    assert references("engine=voxtral_stock", "model.weights=random", "dataset=synthetic") == []
    # openai-whisper downloads from its own address, not from the Hub
    assert references("engine=openai_whisper", "model=whisper_large_v3", "dataset=synthetic") == []


def test_an_unanswered_probe_switches_the_process_offline(monkeypatch):
    from huggingface_hub import constants

    cfg = compose_config("engine=voxtral_stock")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(constants, "ENDPOINT", CLOSED_PORT)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # as if imported online
    line = hub_access.go_offline_if_unreachable(cfg)
    assert line.startswith(f"the Hugging Face Hub ({CLOSED_PORT}) did not answer")
    assert os.environ["HF_HUB_OFFLINE"] == "1" and constants.HF_HUB_OFFLINE is True


def test_no_probe_when_offline_already_or_when_the_hub_answers(monkeypatch, answering_endpoint):
    from huggingface_hub import constants

    endpoint, seen = answering_endpoint
    cfg = compose_config("engine=voxtral_stock")
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    assert constants.HF_HUB_OFFLINE is True  # conftest's HF_HUB_OFFLINE=1
    assert hub_access.go_offline_if_unreachable(cfg) is None and seen == []
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    assert hub_access.go_offline_if_unreachable(cfg) is None and seen == ["/"]
    assert "HF_HUB_OFFLINE" not in os.environ


def online_env(hf_home):
    """The environment of a user who set nothing offline, on a machine where the Hub does not answer."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    env.update(HF_ENDPOINT=CLOSED_PORT, HF_HOME=str(hf_home), PYTHONPATH=str(REPO_DIR))
    return env


def run_bench(args, env):
    return subprocess.run(bench_command(*args), capture_output=True, text=True, env=env, cwd=REPO_DIR, timeout=300)


def test_transformers_offline_set_by_the_user_means_no_probe(tmp_path, answering_endpoint):
    """The older of the two variables, read by huggingface_hub as it reads HF_HUB_OFFLINE."""
    endpoint, seen = answering_endpoint
    env = online_env(tmp_path) | {"HF_ENDPOINT": endpoint, "TRANSFORMERS_OFFLINE": "1"}
    out = run_bench(["engine=voxtral_stock", "run.limit=1", f"hydra.run.dir={tmp_path / 'run'}"], env)
    assert seen == [] and "did not answer" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("bench: error: cannot load Voxtral")  # not cached


@pytest.mark.slow
def test_a_pretrained_model_missing_from_the_cache_fails_without_retrying(tmp_path):
    """Before the probe, huggingface_hub retried each of six files five times (over 2 minutes)."""
    out = run_bench(["engine=voxtral_stock", "run.limit=1", f"hydra.run.dir={tmp_path / 'run'}"], online_env(tmp_path))
    assert out.returncode == 2
    assert "did not answer" in out.stderr and "Retrying" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("bench: error: cannot load Voxtral")


@pytest.mark.slow
def test_a_pretrained_model_in_the_cache_runs_with_the_hub_unreachable(tmp_path):
    """A tiny model saved in the Hub cache's layout under a Hub id loads with no network and
    no offline variable set by the user."""
    snapshot = tmp_path / "hub" / "models--bench-test--tiny-voxtral" / "snapshots" / ("0" * 40)
    tiny_engine("voxtral_stock").model.save_pretrained(snapshot)
    from bench.engines import _voxtral as vox

    vox.local_processor().save_pretrained(snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    args = ["engine=voxtral_stock", "model.id=bench-test/tiny-voxtral", "engine.max_new_tokens=4", "run.limit=2"]
    out = run_bench([*args, "run.progress=false", f"hydra.run.dir={tmp_path / 'run'}"], online_env(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "did not answer" in out.stderr and "Retrying" not in out.stderr
    assert (tmp_path / "run" / "summary.json").exists()


def test_the_agreement_check_probes_too_and_fails_in_one_line(tmp_path):
    command = [sys.executable, "-m", "bench.agreement", "--weights", "pretrained", "--limit", "1"]
    out = subprocess.run(command, capture_output=True, text=True, env=online_env(tmp_path), cwd=REPO_DIR, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr and "Retrying" not in out.stderr
    assert "did not answer" in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("bench.agreement: error: cannot load Voxtral")
