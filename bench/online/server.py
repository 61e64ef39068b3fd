"""python -m bench.serve engine=... model=... [overrides]: any bench engine behind OpenAI's
transcription API, so bench.load (or any OpenAI client) measures it as it would vLLM.

    POST /v1/audio/transcriptions   multipart: file, model, language, response_format (json|text), stream
    GET  /v1/models                 the one model served (and, under "bench", what serves it and
                                    the compiles since start-up), then each of its aliases
    GET  /metrics                   Prometheus' text format: requests by status, queue depth,
                                    batch sizes, latency, audio seconds, compiles after start-up
    GET  /health

Requests are batched (bench.online.batcher). Refusals never touch the engine and each says why
in a sentence: a body that is not a multipart form, a form without one file in 'file', an empty
upload, undecodable or unusable audio 400; an upload over serve.max_upload_mb or audio longer
than serve.max_audio_seconds 413; a model neither served nor an alias of it 404; a full queue
503 with Retry-After. SIGINT or SIGTERM stops accepting and answers every accepted request first.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from contextlib import asynccontextmanager, contextmanager

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from bench.data.audio import SAMPLE_RATE, AudioTooLong, decode_error
from bench.data.streamed_audio import checked
from bench.engines.base import compiled_graphs
from bench.errors import BenchError
from bench.online.batcher import END, Batcher, Job
from bench.online.limits import (
    FIELD_BYTES,
    FORM_OVERHEAD,
    BodyTooLarge,
    BodyTooSlow,
    LimitedBody,
    TimedHeaders,
    client_gone,
    longest_served,
    quoted,
)
from bench.online.metrics import ServerMetrics
from bench.online.warmup import warm_every_shape

FORMATS = ("json", "text")
WHISPER_ALIASES = ["whisper-1"]  # what OpenAI's clients send as the model by default
ROUTE = "/v1/audio/transcriptions"
CLIENT_GONE = 499  # nginx's "client closed request": counted apart in /metrics, never sent


def model_aliases(cfg) -> list[str]:
    """The other names the served model answers to: serve.model_aliases, or by default
    whisper-1 for a Whisper engine (so an OpenAI client's default request is served)."""
    if cfg.serve.model_aliases is not None:
        return list(cfg.serve.model_aliases)
    return list(WHISPER_ALIASES) if cfg.engine.family == "whisper" else []


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status, headers=headers)


def create_app(engine, cfg, environment: dict) -> FastAPI:
    """The app around a loaded, warm engine (load_engine): compiles counted from here on."""
    serve = cfg.serve
    compiles_at_start, captures_at_start = compiled_graphs(), engine.graph_captures()
    compiles = lambda: compiled_graphs() - compiles_at_start  # noqa: E731
    captures = lambda: engine.graph_captures() - captures_at_start  # noqa: E731
    on_batch = lambda jobs: metrics.batch_size.observe(len(jobs))  # noqa: E731
    batcher = Batcher(engine, cfg.run.batch_size, serve.max_wait_ms / 1e3, serve.max_queue,
                      serve.random_tokens_per_second, on_batch)  # fmt: skip
    metrics = ServerMetrics(cfg.run.batch_size, lambda: batcher.pending, compiles, captures, engine.uncompiled_decodes)
    aliases = [a for a in model_aliases(cfg) if a != cfg.model.name]
    request = _Requests(cfg, batcher, metrics, {cfg.model.name, str(cfg.model.id), *aliases}, aliases)

    @asynccontextmanager
    async def lifespan(_app):
        batcher.start()
        yield
        await run_in_threadpool(batcher.close)  # every accepted request is answered by now

    app = FastAPI(title="bench.serve", lifespan=lifespan)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException):
        """A wrong route or method, in OpenAI's error form with a sentence (not {"detail": ...})."""
        if err.status_code == 405:
            return _error(405, f"{request.method} is not allowed on {request.url.path}; "
                               f"{'POST a multipart form' if request.url.path == ROUTE else 'use GET'}")  # fmt: skip
        if err.status_code == 404:
            return _error(404, f"no route {request.url.path}: this server has {ROUTE}, /v1/models, /metrics, /health")
        return _error(err.status_code, str(err.detail))

    @app.get("/health")
    async def health():
        return {"status": "ok", "engine": cfg.engine.name, "model": cfg.model.name, "pending": batcher.pending}

    @app.get("/metrics")
    async def prometheus():
        return Response(metrics.text(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models():
        bench = {"engine": cfg.engine.name, "weights": cfg.model.weights, "scale": cfg.model.scale,
                 "batch_size": cfg.run.batch_size, "max_wait_ms": serve.max_wait_ms,
                 "max_audio_seconds": request.max_seconds, "dtype": str(engine.dtype),
                 "compiles_after_startup": compiles(), "graph_captures_after_startup": captures(),
                 "uncompiled_decodes_after_startup": engine.uncompiled_decodes(),
                 "hardware": environment.get("hardware"), "environment": environment}  # fmt: skip
        card = {"id": cfg.model.name, "object": "model", "owned_by": f"bench:{cfg.engine.name}", "bench": bench}
        alias_cards = [{"id": alias, "object": "model", "owned_by": f"bench:{cfg.engine.name}", "root": cfg.model.name}
                       for alias in aliases]  # fmt: skip
        return {"object": "list", "data": [card, *alias_cards]}

    @app.post(ROUTE)
    async def transcriptions(http: Request):
        arrived = time.monotonic()
        response = await request.answer(http, arrived)
        if not isinstance(response, StreamingResponse):  # a stream is counted, and timed, at its end
            metrics.requests.labels(str(response.status_code)).inc()
            metrics.latency.observe(time.monotonic() - arrived)
        return response

    return app


class _Requests:
    """What POST /v1/audio/transcriptions does with one request: check it, queue it, answer it."""

    def __init__(self, cfg, batcher: Batcher, metrics: ServerMetrics, served: set[str], aliases: list[str]):
        self.cfg, self.serve, self.batcher, self.metrics = cfg, cfg.serve, batcher, metrics
        self.served, self.aliases = served, aliases
        self.limit = int(cfg.serve.max_upload_mb * 2**20)
        self.keep_up_to = 30 * SAMPLE_RATE if batcher.engine.windows_long_clips else None  # samples held decoded
        self.max_seconds, self.too_long = longest_served(cfg, batcher.engine)

    def too_big(self) -> JSONResponse:
        return _error(413, f"the upload is over {self.serve.max_upload_mb:g} MB (serve.max_upload_mb)")

    async def answer(self, http: Request, arrived: float):
        serve, cfg = self.serve, self.cfg
        if int(http.headers.get("content-length") or 0) > self.limit + 2**16:  # the form's own bytes besides
            return self.too_big()
        content_type = http.headers.get("content-type", "")
        kind = content_type.split(";")[0].strip()
        if kind != "multipart/form-data":
            return _error(400, f"the body is {quoted(kind) if kind else 'untyped'}: send a multipart/form-data "
                               "form, the audio in its field 'file'")  # fmt: skip
        # counted as it streams in, whether or not a Content-Length said how much would come
        body = LimitedBody(http.receive, self.limit + FORM_OVERHEAD, serve.body_timeout_s)
        try:
            form = await Request(http.scope, body).form(max_files=1, max_part_size=FIELD_BYTES)
        except BodyTooLarge:
            return self.too_big()
        except BodyTooSlow:
            return _error(408, f"the body was not all in within {serve.body_timeout_s:g} s (serve.body_timeout_s)")
        except Exception as err:  # noqa: BLE001 - a malformed form, or a field over FIELD_BYTES
            detail = str(getattr(err, "detail", err))
            if "exceeded maximum size" in detail:
                return _error(413, f"a form field other than 'file' is over {FIELD_BYTES // 1024} KB")
            if "too many files" in detail.lower():
                return _error(400, "the form holds more than one file: send one, in the field 'file'")
            return _error(400, f"could not read the form: {quoted(detail)}")
        if not body.closed(content_type):
            return _error(400, "the form is cut off: its closing boundary never came (an interrupted upload?)")
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            return _error(400, "no audio: send it as the multipart field 'file'")
        data = await upload.read()
        if len(data) > self.limit:
            return self.too_big()
        if not data:
            return _error(400, "the upload is empty: the field 'file' holds no bytes")
        model = form.get("model")
        if model and model not in self.served:
            names = ", ".join(repr(n) for n in [cfg.model.name, *self.aliases])
            return _error(404, f"model {quoted(model)} is not served here; this server serves {names} "
                               "(serve.model_aliases)")  # fmt: skip
        language = form.get("language")
        if language and language != cfg.dataset.language:
            return _error(400, f"language {quoted(language)}: this server transcribes {cfg.dataset.language!r}")
        response_format = form.get("response_format") or "json"
        if response_format not in FORMATS:
            return _error(400, f"response_format {quoted(response_format)}: use json or text")
        stream = str(form.get("stream") or "false").lower() == "true"
        try:  # a long clip, for an engine that reads it a window at a time: its bytes (streamed_audio)
            audio, problem = await run_in_threadpool(checked, data, self.max_seconds, self.keep_up_to)
        except AudioTooLong as err:
            return _error(413, f"{err} ({self.too_long})")
        except Exception as err:  # noqa: BLE001 - whatever soundfile makes of the bytes
            return _error(400, f"could not decode the audio: {decode_error(err)}")
        if problem:
            return _error(400, f"unusable audio: {problem}")
        loop = asyncio.get_running_loop()
        job = Job(audio, loop, loop.create_future(), asyncio.Queue() if stream else None, arrived=arrived)
        if not self.batcher.submit(job):
            return _error(503, f"overloaded: {serve.max_queue} requests are queued (serve.max_queue)",
                          {"Retry-After": "1"})  # fmt: skip
        if stream:
            return StreamingResponse(self._events(job), media_type="text/event-stream")
        gone = asyncio.ensure_future(client_gone(http.receive))
        try:
            await asyncio.wait({job.done, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if not job.done.done():  # the client hung up first: its place is freed, its answer never computed or sent
            self.batcher.drop(job)
            return Response(status_code=CLIENT_GONE)
        try:
            transcript = job.done.result()
        except Exception as err:  # noqa: BLE001 - the engine failed on this clip
            return _error(500, f"the engine failed: {type(err).__name__}: {err}".splitlines()[0])
        seconds = len(audio) / SAMPLE_RATE
        self.metrics.audio.inc(seconds)
        if response_format == "text":
            return PlainTextResponse(transcript.text)
        return JSONResponse({"text": transcript.text, "usage": {"type": "duration", "seconds": seconds}})

    async def _events(self, job: Job):
        """Server-sent events as OpenAI streams a transcription: text deltas, then the whole text.
        Counted at its end: 200 once whole, 500 after an error event, 499 if the client left."""
        status = CLIENT_GONE
        try:
            while (delta := await job.stream.get()) is not END:
                yield f"data: {json.dumps({'type': 'transcript.text.delta', 'delta': delta})}\n\n"
            try:
                transcript = await job.done
            except Exception as err:  # noqa: BLE001
                status = 500
                yield f"data: {json.dumps({'type': 'error', 'error': {'message': str(err), 'code': 500}})}\n\n"
                return
            self.metrics.audio.inc(len(job.audio) / SAMPLE_RATE)
            yield f"data: {json.dumps({'type': 'transcript.text.done', 'text': transcript.text})}\n\n"
            yield "data: [DONE]\n\n"
            status = 200
        finally:
            if not job.done.done():  # the client hung up mid-stream: its place freed, its batch not awaited
                self.batcher.drop(job)
            self.metrics.requests.labels(str(status)).inc()
            self.metrics.latency.observe(time.monotonic() - job.arrived)


def load_engine(cfg):
    """The engine the config names, loaded and warm at every shape the server will run it at
    (bench.online.warmup), so no request pays for a compile."""
    from bench.engines import engine_class
    from bench.host.hub_access import go_offline_if_unreachable
    from bench.host.libraries import quiet_libraries
    from bench.pipeline.runner import resolve_device, resolve_dtype

    quiet_libraries(cfg.run.verbose)
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    if offline := go_offline_if_unreachable(cfg):
        print(f"bench.serve: {offline}", file=sys.stderr)
    engine = engine_class(cfg.engine.name)(cfg.engine, cfg.model, device, dtype, cfg.dataset.language)
    engine.load()
    say = lambda line: print(f"bench.serve: {line}", file=sys.stderr, flush=True)  # noqa: E731
    warm_every_shape(engine, cfg.run.batch_size, cfg.serve.max_audio_seconds, cfg.serve.random_tokens_per_second, say)
    if (longest := longest_served(cfg, engine))[1] != "serve.max_audio_seconds":
        say(f"clips over {longest[0]:g} s are refused (413): {longest[1]}")
    return engine


def uvicorn_config(app, serve, port: int | None = None) -> uvicorn.Config:
    """How uvicorn serves the app: bench's HTTP/1.1 protocol (a deadline for a request's headers),
    and a stop that answers what was accepted for at most serve.stop_timeout_s."""
    TimedHeaders.header_timeout_s = serve.header_timeout_s
    return uvicorn.Config(app, host=serve.host, port=serve.port if port is None else port, log_level="warning",
                          http=TimedHeaders, timeout_graceful_shutdown=serve.stop_timeout_s)  # fmt: skip


class GracefulServer(uvicorn.Server):
    """uvicorn's server: SIGINT or SIGTERM stops it gracefully as uvicorn's does, but it exits
    with status 0 afterwards instead of raising the signal again (a clean stop is no crash)."""

    @contextmanager
    def capture_signals(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self.handle_exit)
        yield


def usage() -> str:
    """What `python -m bench.serve --help` prints: the command, the names it takes for engine,
    model and dataset, and the serve settings with their defaults."""
    from omegaconf import OmegaConf

    from bench.config import CONF_DIR, ServeConfig

    def choices(group: str) -> str:
        names = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml") if not p.stem.endswith("_schema"))
        return ", ".join(names)

    settings = OmegaConf.to_yaml(OmegaConf.structured(ServeConfig)).strip().splitlines()
    return "\n".join([
        "usage: python -m bench.serve engine=NAME model=NAME [dataset=NAME] [setting=value ...]",
        "",
        __doc__.strip(),
        "",
        f"engine: {choices('engine')}",
        f"model: {choices('model')}",
        f"dataset (its language is the one served): {choices('dataset')}",
        "",
        "run.batch_size caps a batch; the serve settings and their defaults (serve.NAME=value):",
        *(f"  serve.{line}" for line in settings),
        "  (model_aliases null: whisper-1 for a Whisper engine, none for another)",
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    from bench.__main__ import check_group_choices, check_setting_names
    from bench.host.environment import environment
    from bench.lab.grid import compose

    overrides = list(sys.argv[1:] if argv is None else argv)
    if {"--help", "-h"} & set(overrides):
        print(usage())
        return 0
    overrides = check_group_choices(overrides)
    check_setting_names(overrides)
    cfg = compose(overrides)
    try:
        if cfg.run.batch_size < 1:
            raise BenchError(f"run.batch_size={cfg.run.batch_size}: must be at least 1")
        engine = load_engine(cfg)
    except BenchError as err:
        print(f"bench.serve: error: {err}", file=sys.stderr)
        return 2
    app = create_app(engine, cfg, environment(engine.device))
    serve = cfg.serve
    print(f"bench.serve: {cfg.engine.name} ({cfg.model.name}, {cfg.model.weights} weights) on {engine.device}, "
          f"batches of up to {cfg.run.batch_size} (wait {serve.max_wait_ms:g} ms), at most {serve.max_queue} "
          f"queued; http://{serve.host}:{serve.port}/v1/audio/transcriptions", flush=True)  # fmt: skip
    GracefulServer(uvicorn_config(app, serve)).run()
    print("bench.serve: stopped after answering every accepted request", flush=True)
    return 0
