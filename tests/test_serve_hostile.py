"""bench.serve under hostile traffic, in process: every bad request gets its 4xx and a sentence
and the server goes on; odd but valid audio is transcribed; one small file of hours of
silence is refused before it is decoded; no request meets a compile; and a burst of 48
requests mixing long and short clips is answered in full, short clips before a long one."""

import asyncio
import io
import threading
from contextlib import contextmanager

import httpx
import numpy as np
import pytest
import soundfile as sf
import uvicorn
from fastapi.testclient import TestClient
from test_batcher import ScriptedEngine, clip

from bench.data.audio import decode_audio
from bench.lab.grid import compose
from bench.online import server
from bench.online.batcher import token_targets
from bench.online.metrics import batch_sizes, samples
from bench.online.serve_process import free_port, wait_until_healthy
from bench.pipeline.clock import Clock

TINY = ["model.weights=random", "model.scale=tiny", "dataset=sample", "device=cpu"]
ROUTE = "/v1/audio/transcriptions"


def encoded(audio: np.ndarray, rate: int = 16_000, kind: str = "WAV", subtype: str | None = None) -> bytes:
    out = io.BytesIO()
    sf.write(out, audio, rate, format=kind, subtype=subtype)
    return out.getvalue()


def silence_flac(seconds: int) -> bytes:
    """Hours of silence make a small FLAC: written a minute at a time."""
    out = io.BytesIO()
    with sf.SoundFile(out, "w", 16_000, 1, format="FLAC") as f:
        for _ in range(seconds // 60):
            f.write(np.zeros(60 * 16_000, np.int16))
    return out.getvalue()


def without_length(flac: bytes) -> bytes:
    """The FLAC with its header's total-samples field zeroed (FLAC's 'unknown', as a stream
    written on the fly has): the length is known only by decoding."""
    data = bytearray(flac)
    assert data[:4] == b"fLaC"
    data[21] &= 0xF0  # STREAMINFO's 36-bit sample count: the low 4 bits of byte 21, then 22-25
    data[22:26] = bytes(4)
    return bytes(data)


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.05, int(16_000 * seconds)).astype(np.float32)


@pytest.fixture(scope="module")
def served():
    cfg = compose(["engine=openai_whisper", *TINY, "run.batch_size=2", "serve.max_upload_mb=1",
                   "serve.max_audio_seconds=60"])  # fmt: skip
    engine = server.load_engine(cfg)
    with TestClient(server.create_app(engine, cfg, {"hardware": "test"})) as client:
        yield client, engine, cfg


def _post(client, files, data=None):
    return client.post(ROUTE, files=files, data=data or {})


BAD = {  # name: (files, form, status, what the sentence says)
    "empty": ({"file": ("a.wav", b"", "audio/wav")}, {}, 400, "the upload is empty"),
    "truncated": ({"file": ("a.wav", encoded(noise(1))[:30], "audio/wav")}, {}, 400, "could not decode the audio"),
    "garbage": ({"file": ("a.wav", b"not audio at all " * 50, "audio/wav")}, {}, 400, "could not decode the audio"),
    "nan": ({"file": ("a.wav", encoded(np.full(8000, np.nan, np.float32), subtype="FLOAT"), "audio/wav")}, {}, 400,
            "NaN or infinite"),
    "infinite": ({"file": ("a.wav", encoded(np.full(8000, np.inf, np.float32), subtype="FLOAT"), "audio/wav")}, {},
                 400, "NaN or infinite"),
    "an hour of silence": ({"file": ("a.flac", silence_flac(3600), "audio/flac")}, {}, 413,
                           "the audio lasts 3600.0 s, over the 60 s allowed (serve.max_audio_seconds)"),
    "an hour, no length in the header": ({"file": ("a.flac", without_length(silence_flac(3600)), "audio/flac")}, {},
                                         413, "the audio lasts over 60 s"),
    "over the size limit": ({"file": ("a.wav", encoded(noise(40), subtype="FLOAT"), "audio/wav")}, {}, 413,
                            "the upload is over 1 MB (serve.max_upload_mb)"),
    "two files": ([("file", ("a.wav", encoded(noise(1)), "audio/wav")), ("file", ("b.wav", encoded(noise(1)),
                   "audio/wav"))], {}, 400, "the form holds more than one file"),
    "no file field": (None, {"model": "whisper-1"}, 400, "no audio: send it as the multipart field 'file'"),
    "unknown response format": ({"file": ("a.wav", encoded(noise(1)), "audio/wav")}, {"response_format": "srt"},
                                400, "response_format 'srt': use json or text"),
    "unknown language": ({"file": ("a.wav", encoded(noise(1)), "audio/wav")}, {"language": "xx"}, 400,
                         "language 'xx': this server transcribes 'en'"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(BAD))
def test_a_bad_request_gets_its_4xx_and_a_sentence_and_the_server_goes_on(served, name):
    client, _, _ = served
    files, form, status, sentence = BAD[name]
    if files is None:  # a form with fields and no file: multipart still
        response = client.post(ROUTE, data=form, files={"other": ("x.txt", b"x", "text/plain")})
    else:
        response = _post(client, files, form)
    assert response.status_code == status, response.text
    assert sentence in response.json()["error"]["message"]
    assert client.get("/health").status_code == 200


def test_a_json_body_and_a_get_are_told_what_to_send(served):
    client, _, _ = served
    body = client.post(ROUTE, json={"file": "clip.wav"})
    assert body.status_code == 400 and "send a multipart/form-data form" in body.json()["error"]["message"]
    get = client.get(ROUTE)
    assert get.status_code == 405 and get.json()["error"]["message"] == f"GET is not allowed on {ROUTE}; POST a " \
        "multipart form"  # fmt: skip
    assert client.get("/health").status_code == 200


ODD = {  # name: (file name, bytes): valid audio a client may well send
    "stereo 44.1 kHz": ("a.wav", encoded(np.stack([noise(2, 1), noise(2, 2)], axis=1)[: 2 * 44_100], 44_100)),
    "8 kHz": ("a.wav", encoded(noise(2, 3)[:16_000], 8_000)),
    "50 ms": ("a.wav", encoded(noise(0.05, 4))),
    "a path as its name": ("../../etc/passwd.wav", encoded(noise(1, 5))),
}


@pytest.mark.parametrize("name", list(ODD))
def test_odd_valid_audio_is_transcribed_as_the_engine_does_it_alone(served, name):
    client, engine, cfg = served
    filename, data = ODD[name]
    response = _post(client, {"file": (filename, data, "audio/wav")})
    assert response.status_code == 200, response.text
    audio = decode_audio(data)
    targets = token_targets(engine, [len(audio)], cfg.serve.random_tokens_per_second)
    (alone,) = engine.transcribe([audio], targets, Clock(engine.device))
    assert alone.text and response.json()["text"] == alone.text
    assert response.json()["usage"]["seconds"] == pytest.approx(len(audio) / 16_000)


@pytest.mark.slow
def test_no_request_meets_a_compile_after_start_up():
    """whisper_patched compiles its decode step per shape: every row count a batch is padded to
    (powers of two: a lone request runs as one row, not as run.batch_size rows) and the
    long-form window path are warmed before the server answers (a warm-up of one batch shape
    left the long path to compile on its first request)."""
    cfg = compose(["engine=whisper_patched", *TINY, "run.batch_size=4", "serve.max_wait_ms=3000"])
    engine = server.load_engine(cfg)
    assert [engine.batch_shape([16_000] * rows)[0] for rows in (1, 2, 3, 4)] == [1, 2, 4, 4]
    with TestClient(server.create_app(engine, cfg, {"hardware": "test"})) as client:
        post = lambda seconds: _post(client, {"file": ("a.wav", encoded(noise(seconds)), "audio/wav")})  # noqa: E731
        for seconds in (1.0, 45.0):  # short alone, long-form (two windows)
            assert post(seconds).status_code == 200
        # three at once: the first waits for the others (serve.max_wait_ms), a batch of 3 run as 4 rows
        answers = []
        threads = [threading.Thread(target=lambda s=s: answers.append(post(s))) for s in (1.0, 2.0, 3.0)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert [a.status_code for a in answers] == [200] * 3
        card = client.get("/v1/models").json()["data"][0]["bench"]
        assert card["compiles_after_startup"] == 0 and card["graph_captures_after_startup"] == 0
        # nothing compiles after the warm-up whatever it missed; a shape it missed runs uncompiled
        assert card["uncompiled_decodes_after_startup"] == 0
        scrape = samples(client.get("/metrics").text)
        assert scrape[("bench_compiles_after_startup", ())] == 0
        assert scrape[("bench_requests_total", (("status", "200"),))] == 5
        assert batch_sizes({}, scrape) == {1: 2, 3: 1}


@contextmanager
def serving(app):
    """The app on 127.0.0.1 in a thread of this process: real HTTP, concurrent clients."""
    port = free_port()
    http = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=http.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, timeout=60)
        yield url
    finally:
        http.should_exit = True
        thread.join(60)


def test_a_burst_of_48_mixing_long_and_short_clips_is_answered_in_full_short_ones_first():
    """Two 300 s clips (ten windows each, 0.2 s of work a window) and 46 short ones, sent at
    once while the first long clip's first window runs: every request answered with its own
    text, and every short one before the long one (a batcher that runs a long clip to its end
    answers the short ones after it)."""
    cfg = compose(["engine=openai_whisper", *TINY, "run.batch_size=8"])
    engine = ScriptedEngine(window_s=0.2)
    engine.go_on.clear()
    app = server.create_app(engine, cfg, {"hardware": "test"})
    long_clip = encoded(clip(300, 1), kind="FLAC")
    shorts = {mark: encoded(clip(1 + mark % 3, mark)) for mark in range(100, 146)}

    async def burst(url):
        async with httpx.AsyncClient(timeout=120) as client:
            post = lambda data: client.post(f"{url}{ROUTE}", files={"file": ("a.wav", data)})  # noqa: E731

            async def timed(data):
                start = asyncio.get_running_loop().time()
                response = await post(data)
                return response, asyncio.get_running_loop().time() - start, asyncio.get_running_loop().time()

            first = asyncio.create_task(timed(long_clip))
            assert await asyncio.to_thread(engine.in_long.wait, 30)
            before = samples((await client.get(f"{url}/metrics")).text)
            rest = [asyncio.create_task(timed(data)) for data in [*shorts.values(), encoded(clip(300, 2), kind="FLAC")]]
            while (await client.get(f"{url}/health")).json()["pending"] < 48:  # every request accepted
                await asyncio.sleep(0.01)
            engine.go_on.set()
            answers = [await first, *[await task for task in rest]]
            after = samples((await client.get(f"{url}/metrics")).text)
            return answers, before, after

    with serving(app) as url:
        answers, before, after = asyncio.run(burst(url))
    responses = [response for response, _, _ in answers]
    assert all(r.status_code == 200 or (r.status_code == 503 and r.headers["retry-after"]) for r in responses)
    assert [r.status_code for r in responses] == [200] * 48  # a queue of 64: none refused
    marks = [1, *shorts, 2]
    assert [r.json()["text"] for r in responses] == [f"clip {m}" for m in marks]  # each its own clip's text
    long_ended = answers[0][2]
    short_latencies = [latency for _, latency, _ in answers[1:-1]]
    assert all(ended < long_ended for _, _, ended in answers[1:-1]), "a short clip waited for the long one"
    assert np.percentile(short_latencies, 99) < answers[0][1]
    # the server's own account: the batches it formed (the long clips alone, the short ones by 8)
    assert batch_sizes(before, after) == {1: 1, 6: 1, 8: 5}  # the first long clip's batch had begun
    assert sum(r.json()["usage"]["seconds"] for r in responses) == pytest.approx(
        after[("bench_audio_seconds_total", ())] - before[("bench_audio_seconds_total", ())]
    )


def test_a_load_run_without_time_to_first_text_says_why_in_the_report(tmp_path):
    """Beside a streamed load run, one sent without --stream has no TTFT: n/a, and the reason."""
    import json
    import shutil

    from bench.analysis.comparison import comparison_frame, figure_notes
    from bench.analysis.runs import load_runs
    from bench.config import REPO_DIR

    streamed = REPO_DIR / "results/online/cpu/c1"
    plain = tmp_path / "c1_plain"
    shutil.copytree(streamed, plain)
    summary = json.loads((plain / "summary.json").read_text())
    note = "not measured: the requests were not streamed (bench.load --stream)"
    summary["online"] |= {"stream": False, "ttft": {"p50": None, "p90": None, "p99": None}, "ttft_note": note}
    (plain / "summary.json").write_text(json.dumps(summary))
    runs = load_runs([str(streamed), str(plain)])
    cells = comparison_frame(runs)["TTFT p50 s"].tolist()
    assert cells[0] == summary_ttft(streamed) and np.isnan(cells[1])  # shown as n/a (table.readable)
    assert f"Time to first text (TTFT p50 s) n/a: {note}.\n" in figure_notes(runs)
    assert "TTFT" not in figure_notes(runs[:1])  # nothing missing, nothing to explain


def summary_ttft(folder):
    import json

    return json.loads((folder / "summary.json").read_text())["online"]["ttft"]["p50"]
