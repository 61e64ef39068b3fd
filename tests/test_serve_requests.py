"""bench.serve's answers to what OpenAI clients send, in process (the app over a tiny engine
with random weights): the model name they send by default, an empty upload, and --help."""

import io

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from bench.lab.grid import compose
from bench.online import server

TINY = ["model.weights=random", "model.scale=tiny", "dataset=sample", "run.batch_size=2", "device=cpu"]


def _client(*overrides: str) -> TestClient:
    cfg = compose(["engine=openai_whisper", *TINY, *overrides])
    return TestClient(server.create_app(server.load_engine(cfg), cfg, {"hardware": "test"}))


def _wav(seconds: float = 0.5) -> bytes:
    out = io.BytesIO()
    sf.write(out, np.random.default_rng(0).normal(0, 0.01, int(16_000 * seconds)), 16_000, format="WAV")
    return out.getvalue()


def _post(client, data: bytes, **form):
    return client.post("/v1/audio/transcriptions", files={"file": ("a.wav", data, "audio/wav")}, data=form)


@pytest.fixture(scope="module")
def client():
    with _client() as client:  # the context runs the app's lifespan: its batcher
        yield client


def test_a_whisper_engine_answers_to_whisper_1_and_lists_it(client):
    assert _post(client, _wav(), model="whisper-1").status_code == 200
    assert _post(client, _wav(), model="whisper_large_v3").status_code == 200
    cards = client.get("/v1/models").json()["data"]
    assert [c["id"] for c in cards] == ["whisper_large_v3", "whisper-1"] and cards[1]["root"] == "whisper_large_v3"
    other = _post(client, _wav(), model="gpt-4o-transcribe")
    assert other.status_code == 404
    assert "'whisper_large_v3', 'whisper-1'" in other.json()["error"]["message"]


def test_an_empty_upload_is_named_as_such(client):
    empty = _post(client, b"")
    assert empty.status_code == 400
    assert empty.json()["error"]["message"].startswith("the upload is empty")


def test_the_aliases_are_a_setting():
    with _client("serve.model_aliases=[]") as client:
        assert _post(client, _wav(), model="whisper-1").status_code == 404
        assert [c["id"] for c in client.get("/v1/models").json()["data"]] == ["whisper_large_v3"]
    assert server.model_aliases(compose(["engine=voxtral_patched", *TINY])) == []  # whisper-1 is Whisper's
    assert server.model_aliases(compose(["engine=voxtral_patched", *TINY, "serve.model_aliases=[vox]"])) == ["vox"]


def test_help_prints_the_usage_and_the_serve_settings(capsys):
    assert server.main(["--help"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("usage: python -m bench.serve engine=NAME model=NAME")
    assert "serve.max_queue: 64" in printed and "serve.model_aliases: null" in printed
    (engines,) = [line for line in printed.splitlines() if line.startswith("engine: ")]
    assert "whisper_patched" in engines and "whisper_patched_schema" not in engines
