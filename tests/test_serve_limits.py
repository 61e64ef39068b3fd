"""bench.serve's limits against hostile clients (the hostile-traffic suite, with
test_serve_hostile.py): a long clip holds a short request for one window's work at most; size
limits hold however the body arrives; errors quote a short prefix of what they refuse; slow
clients get 408; clients that hang up free their place and are counted apart (499)."""

import asyncio
import select
import socket
import threading
import time
from contextlib import contextmanager

import httpx
import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient
from test_batcher import ScriptedEngine, clip
from test_serve_hostile import TINY, encoded, noise

from bench.engines.base import run_to_end
from bench.lab.grid import compose
from bench.online import server
from bench.online.metrics import samples
from bench.online.serve_process import free_port, wait_until_healthy
from bench.pipeline.clock import Clock

ROUTE = "/v1/audio/transcriptions"
LIMITS = ["serve.max_upload_mb=1", "serve.header_timeout_s=0.5", "serve.body_timeout_s=1"]


def scripted_app(engine=None, *more):
    cfg = compose(["engine=openai_whisper", *TINY, "run.batch_size=4", *LIMITS, *more])
    return server.create_app(engine or ScriptedEngine(), cfg, {"hardware": "test"}), cfg


@contextmanager
def serving(app, header_timeout_s: float = 0.5):
    """The app over real HTTP in a thread, as bench.serve's main serves it (server.uvicorn_config)."""
    port = free_port()
    cfg = compose(["engine=openai_whisper", *TINY, f"serve.header_timeout_s={header_timeout_s}"])
    http = uvicorn.Server(server.uvicorn_config(app, cfg.serve, port))
    thread = threading.Thread(target=http.run, daemon=True)
    thread.start()
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", timeout=60)
        yield port
    finally:
        http.should_exit = True
        thread.join(60)


def _answer(sock: socket.socket, within_s: float) -> bytes:
    """What the server sends until it closes the connection (or within_s passes)."""
    sock.settimeout(within_s)
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except TimeoutError:
        pass
    return got


# -- a long clip holds a short request for one window's work at most ------------------------------
@pytest.mark.parametrize("name", ["whisper_patched", "openai_whisper"])
def test_a_long_clip_is_encoded_one_window_per_step(name):
    """bench.serve runs other batches between a long clip's steps: each step must be one
    window's work. Both engines encoded all of a clip's windows before its first pause (a
    29-minute file held a short request 47 s on the 2-core CPU)."""
    from conftest import tiny_engine

    engine = tiny_engine(name, "model=whisper_large_v3")
    encoded_per_step, step = [], [0]
    encode = engine._encode

    def counting_encode(windows, *args, **kwargs):
        encoded_per_step.append((step[0], len(windows)))
        return encode(windows, *args, **kwargs)

    engine._encode = counting_encode
    audio = noise(100)  # four windows
    steps = engine.transcribe_steps([audio], [12], Clock(engine.device))
    with pytest.raises(StopIteration):
        while True:
            next(steps)
            step[0] += 1
    assert encoded_per_step == [(0, 1), (1, 1), (2, 1), (3, 1)]


# -- sizes, however the body arrives ---------------------------------------------------------------
def test_a_chunked_body_over_the_limit_is_refused_before_it_is_all_sent():
    """No Content-Length (chunked): the server counts the body as it comes and answers 413 once it
    passes the limit (1 MB here); it read all of a 300 MB chunked upload before."""
    app, _ = scripted_app()
    boundary = "b0undary"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n").encode()  # fmt: skip
    with serving(app) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"POST {ROUTE} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: "
                     f"multipart/form-data; boundary={boundary}\r\n\r\n".encode())  # fmt: skip
        sent, chunk, answered_at = 0, head + bytes(64 * 1024), None
        sock.settimeout(5)
        try:
            while sent < 8 * 2**20:  # 8 MB offered
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                sent += len(chunk)
                chunk = bytes(64 * 1024)
                if answered_at is None and select.select([sock], [], [], 0.01)[0]:
                    answered_at = sent  # the answer is there to read
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed
        answer = _answer(sock, 5)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"the upload is over 1 MB" in answer
    # answered once the limit was passed, not after the whole body (what follows is discarded as it comes)
    assert answered_at is not None and answered_at < 2 * 2**20


def test_a_field_other_than_the_file_is_held_to_64_kb_and_the_error_quotes_a_prefix():
    """A text field was held to the upload's limit (12 of 20 MB each, chunked, were answered 200:
    the chunked test holds the total); a 20 MB model name came back whole in its 404."""
    app, _ = scripted_app()
    with TestClient(app) as client:
        wav = {"file": ("a.wav", encoded(noise(1)), "audio/wav")}
        field = client.post(ROUTE, files=wav, data={"prompt": "x" * 200_000})  # 200 KB, under the 1 MB upload
        assert field.status_code == 413 and "a form field other than 'file' is over 64 KB" in field.text
        model = client.post(ROUTE, files=wav, data={"model": "m" * 50_000})
        assert model.status_code == 404 and len(model.content) < 1000
        assert "'" + "m" * 40 + "'... (50,000 characters) is not served here" in model.json()["error"]["message"]
        language = client.post(ROUTE, files=wav, data={"language": "l" * 50_000})
        assert language.status_code == 400 and len(language.content) < 1000 and "(50,000 characters)" in language.text
        garbage = client.post(ROUTE, files={"file": ("a.wav", b"not audio at all " * 50, "audio/wav")})
        message = garbage.json()["error"]["message"]
        assert garbage.status_code == 400 and "the audio bytes" in message and " at 0x" not in message


def test_a_form_cut_off_before_its_end_is_told_so():
    app, _ = scripted_app()
    boundary = "b0undary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n").encode() + encoded(noise(1))[:5000]  # fmt: skip
    with TestClient(app) as client:
        cut = client.post(ROUTE, content=body, headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert cut.status_code == 400 and "the form is cut off" in cut.json()["error"]["message"]


def test_a_header_that_claims_an_impossible_rate_is_refused():
    """A 93 KB WAV whose header says 27 samples a second lasts 1,778 s: it was accepted and
    decoded to 28 million 16 kHz samples."""
    app, _ = scripted_app(None, "serve.max_audio_seconds=1800")
    with TestClient(app) as client:
        lying = client.post(ROUTE, files={"file": ("a.wav", encoded(noise(3)[:46_000], rate=27), "audio/wav")})
    assert lying.status_code == 400 and "the header says 27 samples a second" in lying.json()["error"]["message"]


def test_a_header_that_claims_more_audio_than_decodes_is_refused():
    """An MP3 cut off in transit keeps its header's length (10 s) and decodes 1.8 s: it was
    transcribed as if whole. The whole file, whose header is an estimate, still decodes."""
    whole = encoded(noise(10), kind="MP3")
    app, _ = scripted_app(None, "serve.max_audio_seconds=60")
    with TestClient(app) as client:
        cut = client.post(ROUTE, files={"file": ("a.mp3", whole[: len(whole) // 5], "audio/mpeg")})
        kept = client.post(ROUTE, files={"file": ("a.mp3", whole, "audio/mpeg")})
    message = cut.json()["error"]["message"]
    assert cut.status_code == 400 and "the header says 10.0 s of audio, but only 1.8 s decode" in message
    assert kept.status_code == 200


def test_voxtral_compile_refuses_a_clip_over_its_static_cache_before_queueing_it():
    """voxtral_compile decodes every batch in one static cache sized at start-up (2 chunks: the
    warm-up's 31 s clips); a longer clip was queued, failed inside the engine and got a 500
    ("needs 20 chunks of 30 s"). It is refused with 413 and the reason, the engine never called,
    and /v1/models says the longest clip served."""
    from conftest import tiny_engine

    from bench.online.warmup import serving_batches

    engine = tiny_engine("voxtral_compile")
    engine.plan(serving_batches(4, 1800))  # as the warm-up plans it (its compile is not needed here)
    ran = []
    engine.transcribe_steps = lambda *args: ran.append(args)
    cfg = compose(["engine=voxtral_compile", "model=voxtral_mini_3b", "model.weights=random", "model.scale=tiny",
                   "device=cpu", "run.batch_size=4", "serve.max_audio_seconds=1800"])  # fmt: skip
    with TestClient(server.create_app(engine, cfg, {"hardware": "test"})) as client:
        longest = client.get("/v1/models").json()["data"][0]["bench"]["max_audio_seconds"]
        refused = client.post(ROUTE, files={"file": ("a.wav", encoded(noise(61)), "audio/wav")})
    assert longest == 60
    assert refused.status_code == 413 and not ran
    message = refused.json()["error"]["message"]
    assert message.startswith("the audio lasts 61.0 s, over the 60 s allowed (voxtral_compile decodes every batch")


# -- slow clients ----------------------------------------------------------------------------------
def test_half_sent_headers_get_408_and_the_connection_closed():
    app, _ = scripted_app()
    with serving(app, header_timeout_s=0.5) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"POST {ROUTE} HTTP/1.1\r\nHost: x\r\nContent-Ty".encode())
        began = time.monotonic()
        answer = _answer(sock, 10)
    assert answer.startswith(b"HTTP/1.1 408") and b"serve.header_timeout_s" in answer
    assert 0.4 < time.monotonic() - began < 5  # closed at the deadline, not held open


def test_a_body_sent_too_slowly_gets_408():
    app, _ = scripted_app()
    with serving(app, header_timeout_s=5) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"POST {ROUTE} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nContent-Type: "
                     "multipart/form-data; boundary=b\r\n\r\n--b\r\n".encode())  # fmt: skip
        began = time.monotonic()
        for _ in range(30):  # 10 bytes a second: never done within serve.body_timeout_s (1 s)
            try:
                sock.sendall(b"x" * 10)
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.1)
            if time.monotonic() - began > 2.5:
                break
        answer = _answer(sock, 5)
    assert answer.startswith(b"HTTP/1.1 408") and b"serve.body_timeout_s" in answer


# -- clients that leave ----------------------------------------------------------------------------
def test_clients_that_hang_up_free_their_place_and_are_counted_499():
    """Three requests behind a long clip whose first window the test holds (one of them
    streamed): their clients give up after 0.3 s. Their places are freed (pending back to the long clip alone) while the
    engine is still busy, and /metrics counts them as 499, not 200."""
    engine = ScriptedEngine(window_s=0.0)
    engine.go_on.clear()
    app, _ = scripted_app(engine, "serve.max_audio_seconds=600")

    async def abandon(port):
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(timeout=30) as client:
            long_request = asyncio.create_task(
                client.post(f"{url}{ROUTE}", files={"file": ("a.flac", encoded(clip(90, 1), kind="FLAC"))})
            )
            assert await asyncio.to_thread(engine.in_long.wait, 30)
            async with httpx.AsyncClient(timeout=0.3) as impatient:
                for mark in (2, 3, 4):  # the last one streamed: counted at its end, 499 as it never ends
                    stream = {"stream": "true"} if mark == 4 else {}
                    with pytest.raises(httpx.TimeoutException):
                        async with impatient.stream(
                            "POST", f"{url}{ROUTE}", data=stream, files={"file": ("a.wav", encoded(clip(1, mark)))}
                        ) as answer:
                            await answer.aread()  # fmt: skip
            deadline, pending = time.monotonic() + 5, None
            while pending != 1 and time.monotonic() < deadline:
                pending = (await client.get(f"{url}/health")).json()["pending"]
                await asyncio.sleep(0.05)
            scrape = samples((await client.get(f"{url}/metrics")).text)
            engine.go_on.set()
            answered = await long_request
            return pending, scrape, answered

    with serving(app) as port:
        pending, scrape, answered = asyncio.run(abandon(port))
    assert pending == 1  # the long clip alone: the three abandoned requests no longer hold places
    assert scrape[("bench_requests_total", (("status", "499"),))] == 3
    assert ("bench_requests_total", (("status", "200"),)) not in scrape
    assert answered.status_code == 200 and answered.json()["text"] == "clip 1"
    assert [entry for entry in engine.log if entry[0] == "batch"] == []  # none of them ever ran
    assert np.all([entry[1] == 1 for entry in engine.log])


def test_bench_load_counts_a_request_it_gave_up_on_as_499():
    """The load generator's side: a request past --timeout is its own status in the tables, not a 0."""
    from bench.online.load import send

    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        port = silent.getsockname()[1]

        async def one():
            async with httpx.AsyncClient() as client:
                return await send(client, f"http://127.0.0.1:{port}{ROUTE}", None, encoded(noise(1)), False, 0.3)

        record = asyncio.run(one())
    assert record["status"] == 499 and "Timeout" in record["error"]


def test_the_wait_benchmark_reads_the_batches_a_server_has_begun():
    """bench.lab.short_behind_long sends the short clip once the long clip's batch has begun: the
    count it reads from /metrics is the server's count of batches."""
    from bench.lab.short_behind_long import batches_begun
    from bench.online.metrics import ServerMetrics

    metrics = ServerMetrics(4, lambda: 0, lambda: 0, lambda: 0, lambda: 0)
    assert batches_begun(metrics.text().decode()) == 0
    for size in (1, 3, 4):
        metrics.batch_size.observe(size)
    assert batches_begun(metrics.text().decode()) == 3


def test_pending_never_counts_a_request_whose_answer_is_being_sent():
    """/health's pending read one too many while an answer was sent: the engine thread freed the
    place after handing the answer to the event loop. The test holds the batcher's lock on the
    loop's thread while the answer arrives, so an engine thread that frees the place itself
    cannot have done so yet; the place must be free when the answer is."""
    from test_batcher import _submit

    from bench.online.batcher import Batcher

    engine = ScriptedEngine()
    inside, go = threading.Event(), threading.Event()
    transcribe_steps = engine.transcribe_steps

    def held_steps(audios, targets, clock):
        inside.set()
        assert go.wait(30)
        return (yield from transcribe_steps(audios, targets, clock))

    engine.transcribe_steps = held_steps
    batcher = Batcher(engine, batch_size=1, max_wait_s=0.0, max_queue=4, tokens_per_second=3.5)

    async def scenario():
        (job,) = await _submit(batcher, [clip(1, 7)])
        batcher.start()
        assert await asyncio.to_thread(inside.wait, 30)
        with batcher._cv:  # reentrant on this thread: the loop's own settling may take it
            go.set()
            transcript = await asyncio.wait_for(job.done, 30)
            return transcript.text, batcher.pending

    text, pending = asyncio.run(scenario())
    batcher.close()
    assert text == "clip 7" and pending == 0


def test_a_stop_is_bounded_with_a_slow_client_in_flight():
    """SIGTERM with a body trickling in: the server waited for that client (62.8 s); now the stop
    answers what was accepted for at most serve.stop_timeout_s (1 s here)."""
    app, cfg = scripted_app(None, "serve.body_timeout_s=60", "serve.stop_timeout_s=1")
    port = free_port()
    http = uvicorn.Server(server.uvicorn_config(app, cfg.serve, port))
    thread = threading.Thread(target=http.run, daemon=True)
    thread.start()
    wait_until_healthy(f"http://127.0.0.1:{port}", timeout=60)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"POST {ROUTE} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\nContent-Type: "
                     "multipart/form-data; boundary=b\r\n\r\n--b\r\n".encode())  # fmt: skip
        time.sleep(0.3)
        began = time.monotonic()
        http.should_exit = True  # what SIGTERM sets
        thread.join(20)
        stopped = time.monotonic() - began
    assert not thread.is_alive() and stopped < 5


# -- a long Voxtral clip: one sequence, paused at every decode step --------------------------------
NOT_COMPILED = "engine.patches=[" + ",".join(
    ["device_features", "batched_encoder", "merge_no_sync", "static_cache", "sync_free_loop",
     "fused_projections", "grouped_attention", "packed_linears", "attention_window", "chunked_prefill",
     "cuda_graph"]) + "]"  # fmt: skip


def _in_turns(engine, batches: dict[str, tuple], start_after: dict[str, int], work) -> tuple[dict, dict]:
    """Step batches as bench.serve's engine thread does, one step each per round; batch k starts
    once the first batch has taken start_after[k] steps (or has ended). Each batch's transcripts, and the work
    (work(clock): a count that grows as a batch decodes) each of its steps did."""
    clocks = {name: Clock(engine.device) for name in batches}
    running, taken, results = {}, {name: [] for name in batches}, {}
    first = next(iter(batches))
    while len(results) < len(batches):
        for name, (audios, targets) in batches.items():
            due = len(taken[first]) >= start_after.get(name, 0) or first in results
            if name not in running and name not in results and due:
                running[name] = engine.transcribe_steps(audios, targets, clocks[name])
        for name, steps in list(running.items()):
            before = work(clocks[name])
            try:
                next(steps)
            except StopIteration as done:
                results[name] = [t.tokens for t in done.value]
                del running[name]
            taken[name].append(work(clocks[name]) - before)
    return results, taken


LONG_SHORT = {"long": (45, 1, 40), "same shape": (50, 2, 30), "short": (3, 3, 8)}  # seconds, seed, tokens


def _alone_and_in_turns(engine, work):
    batches = {name: ([noise(seconds, seed)], [tokens]) for name, (seconds, seed, tokens) in LONG_SHORT.items()}
    clock = Clock(engine.device)
    alone = {name: [t.tokens for t in engine.transcribe(a, t, clock)] for name, (a, t) in batches.items()}
    # the short one starts in the long clip's 5th step: on voxtral_patched, between its prefill's
    # two pieces (the second read the short batch's attention window, and failed, when served)
    return alone, *_in_turns(engine, batches, {"same shape": 3, "short": 4}, work)


def _counting_units(engine, monkeypatch):
    """A count of voxtral_patched's units of work, as a clock's work: a chunk's log-mel, an audio
    encoder call, a prefill forward (the whole prompt or a piece), a decode step."""
    units = [0]

    def counted(function):
        def call(*args, **kwargs):
            units[0] += 1
            return function(*args, **kwargs)

        return call

    def counted_chunks(audio):
        for chunk in log_mel_chunks(audio):
            units[0] += 1
            yield chunk

    log_mel_chunks = engine.log_mel_chunks
    monkeypatch.setattr(engine, "log_mel_chunks", counted_chunks)
    monkeypatch.setattr(engine.decoder, "_prefill_part", counted(engine.decoder._prefill_part))
    engine.model.model.audio_tower.register_forward_hook(lambda *args: units.__setitem__(0, units[0] + 1))
    return lambda clock: units[0] + clock.counts.get("decode_steps", 0)


@pytest.mark.parametrize("graph", [False, True], ids=["eager", "cuda-graph-emulated"])
def test_a_long_voxtral_clip_pauses_after_every_unit_of_work_and_keeps_its_tokens(graph, monkeypatch):
    """Voxtral decodes a long clip's transcript as one sequence (thousands of steps for half an
    hour), and voxtral_patched decoded it whole in one step: a short request waited for all of
    it; then its first two steps still covered the whole clip (every chunk's log-mel and encoder,
    then the whole prompt's prefill: 22 s of a 29-minute clip on the 2-core CPU). Now each step
    of a long batch is one chunk's log-mel, one chunk's encoder, one piece of its prefill or one
    decode step, and batches run between them (a short one, and one of the long clip's own
    shape, which must wait for its cache) leave every batch's tokens as it decodes them alone."""
    from conftest import tiny_engine

    engine = tiny_engine("voxtral_patched", NOT_COMPILED)
    if graph:
        from cuda_graph_emulation import Emulation

        Emulation(engine, monkeypatch)
    assert engine.batch_shape([45 * 16_000]) == engine.batch_shape([50 * 16_000])
    assert engine.context_tokens(45 * 16_000) == 758  # 2 x 375 audio positions: pieces of 246 and 512
    work = _counting_units(engine, monkeypatch)
    alone, together, taken = _alone_and_in_turns(engine, work)
    assert together == alone
    # 2 log-mel chunks, 2 encoder calls, 2 prefill pieces, then a decode step each
    assert max(taken["long"]) == 1 and sum(taken["long"]) >= 6 + 40
    assert taken["long"][:6] == [1] * 6
    assert len(taken["short"]) == 1 and taken["short"][0] >= 3 + 8  # a batch of short clips: one unit


def test_stock_voxtral_pauses_inside_generate_after_every_layer_of_its_first_token_and_every_token():
    """voxtral_stock decodes through transformers' generate, which bench cannot step; it runs on
    a helper thread that hands control back after each token (bench.engines._paused_call). Its
    first token was one step: the audio encoder over every chunk and the prefill of the whole
    prompt (with the processor's features, 5.04 s for a 29-minute clip on the 2-core CPU). Now
    it pauses after each layer of both (2 each at tiny scale), so each step of a long batch is
    one layer's work or one token's, and the batches run between keep their tokens."""
    from conftest import tiny_engine

    engine = tiny_engine("voxtral_stock")
    calls = [0]

    def count(module, args, output) -> None:
        calls[0] += 1

    inner = engine.model.model
    for layer in inner.audio_tower.layers:
        layer.register_forward_hook(count)  # every chunk of the batch through one layer
    for layer in inner.language_model.layers:  # the prefill's layers, each over the whole prompt
        layer.register_forward_hook(
            lambda module, args, output: count(module, args, output) if args[0].shape[1] > 1 else None
        )
    inner.language_model.register_forward_hook(  # a decode step: one position through every layer
        lambda module, args, output: count(module, args, output) if output.last_hidden_state.shape[1] == 1 else None
    )
    alone, together, taken = _alone_and_in_turns(engine, lambda clock: calls[0])
    assert together == alone
    assert max(taken["long"]) == 1  # a whole first token would be 4 units: 2 encoder layers, 2 prefill
    assert sum(taken["long"]) >= 2 + 2 + 39  # then each token after the prefill's
    assert len(taken["short"]) == 1 and taken["short"][0] >= 2 + 2 + 7  # short clips: one unit


def test_stock_voxtral_computes_a_long_clips_features_beside_other_batches():
    """The processor's work for a long clip (host only: 4 s for 29 minutes on this CPU) runs on
    a thread of its own (bench.engines._paused_call.beside): the engine thread steps other
    batches meanwhile. Here the long clip's processor is held until a short batch has run on
    the engine thread; were the processor on the engine thread, its first step would never return."""
    from conftest import tiny_engine

    from bench.engines.voxtral_stock import VoxtralStock

    engine = tiny_engine("voxtral_stock")
    long_clip, short_clip = noise(45, 1), noise(3, 3)
    alone = [t.tokens for t in engine.transcribe([long_clip], [12], Clock(engine.device))]
    released, prepared_on = threading.Event(), []

    def held_prepare(audios):
        if len(audios[0]) > 30 * 16_000:
            prepared_on.append(threading.current_thread().name)
            assert released.wait(60), "the short batch never ran while the long clip's features were held"
        return VoxtralStock.prepare(engine, audios)

    engine.prepare = held_prepare
    steps = engine.transcribe_steps([long_clip], [12], Clock(engine.device))
    next(steps)  # the processor has begun on its own thread; the step returns
    short = engine.transcribe([short_clip], [8], Clock(engine.device))
    released.set()
    assert [t.tokens for t in run_to_end(steps)] == alone
    assert prepared_on == ["bench-beside"] and len(short[0].tokens) == 8


def test_a_paused_call_abandoned_mid_way_ends_its_thread():
    """A batch whose steps are dropped (the server stopping) must not leave generate blocked on
    its helper thread, holding its memory: it is cancelled at its next pause."""
    import torch

    from bench.engines._paused_call import Cancelled, paused_call

    reached = []

    def call(pause):
        try:
            for k in range(100):
                reached.append(k)
                pause()
        except Cancelled:
            reached.append("cancelled")
            raise
        return "whole"

    steps = paused_call(call)
    next(steps), next(steps)
    threads = {t.name for t in threading.enumerate()}
    assert "bench-paused-call" in threads
    # closed on another thread: a close that waited for the call forever would hang the test
    closer = threading.Thread(target=steps.close, daemon=True)
    closer.start()
    closer.join(timeout=30)
    assert not closer.is_alive(), "closing the steps did not end the call: its thread still blocks"
    assert reached == [0, 1, "cancelled"]
    assert "bench-paused-call" not in {t.name for t in threading.enumerate()}
    assert run_to_end(paused_call(lambda pause: [pause() for _ in range(3)] and "whole")) == "whole"
    # the call's thread runs with the caller's compile settings (per thread in torch): at the
    # default recompile limit, voxtral_stock's generate would run eager past 8 shapes
    with torch._dynamo.config.patch(recompile_limit=77):
        assert run_to_end(paused_call(lambda pause: pause() or torch._dynamo.config.recompile_limit)) == 77
