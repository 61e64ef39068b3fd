"""python -m bench.serve engine=... model=... [overrides]: any bench engine behind OpenAI's
transcription API, so bench.load (or any OpenAI client) measures it as it would vLLM.

    POST /v1/audio/transcriptions   multipart: file, model, language, response_format (json|text), stream
    GET  /v1/models                 the one model served (and, under "bench", what serves it),
                                    then each of its aliases (serve.model_aliases)
    GET  /health

Requests are batched (bench.online.batcher). Refusals never touch the engine: an empty
upload, undecodable or empty audio 400, an upload over serve.max_upload_mb 413, a model
neither served nor an alias of it 404, a full queue 503 with Retry-After. SIGINT or SIGTERM
stops accepting and answers every accepted request first.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from contextlib import asynccontextmanager, contextmanager

import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from bench.data.audio import SAMPLE_RATE, decode_audio
from bench.data.utterance import audio_problem
from bench.errors import BenchError
from bench.online.batcher import END, Batcher, Job, token_targets
from bench.pipeline.clock import Clock

FORMATS = ("json", "text")
WHISPER_ALIASES = ["whisper-1"]  # what OpenAI's clients send as the model by default


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
    serve = cfg.serve
    batcher = Batcher(engine, cfg.run.batch_size, serve.max_wait_ms / 1e3, serve.max_queue,
                      serve.random_tokens_per_second)  # fmt: skip
    limit = int(serve.max_upload_mb * 2**20)
    aliases = [a for a in model_aliases(cfg) if a != cfg.model.name]
    served = {cfg.model.name, str(cfg.model.id), *aliases}

    @asynccontextmanager
    async def lifespan(_app):
        batcher.start()
        yield
        await run_in_threadpool(batcher.close)  # every accepted request is answered by now

    app = FastAPI(title="bench.serve", lifespan=lifespan)

    @app.get("/health")
    async def health():
        return {"status": "ok", "engine": cfg.engine.name, "model": cfg.model.name, "pending": batcher.pending}

    @app.get("/v1/models")
    async def models():
        bench = {"engine": cfg.engine.name, "weights": cfg.model.weights, "scale": cfg.model.scale,
                 "batch_size": cfg.run.batch_size, "max_wait_ms": serve.max_wait_ms, "dtype": str(engine.dtype),
                 "hardware": environment.get("hardware"), "environment": environment}  # fmt: skip
        card = {"id": cfg.model.name, "object": "model", "owned_by": f"bench:{cfg.engine.name}", "bench": bench}
        alias_cards = [{"id": alias, "object": "model", "owned_by": f"bench:{cfg.engine.name}", "root": cfg.model.name}
                       for alias in aliases]  # fmt: skip
        return {"object": "list", "data": [card, *alias_cards]}

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request):
        if int(request.headers.get("content-length") or 0) > limit + 2**16:  # the form's own bytes besides
            return _error(413, f"the upload is over {serve.max_upload_mb:g} MB (serve.max_upload_mb)")
        try:
            form = await request.form(max_files=1, max_part_size=limit + 1)
        except Exception as err:  # noqa: BLE001 - a malformed or oversized form
            too_big = "maximum" in str(err).lower() or "exceed" in str(err).lower()
            return _error(413 if too_big else 400, f"could not read the form: {err}")
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            return _error(400, "no audio: send it as the multipart field 'file'")
        data = await upload.read()
        if len(data) > limit:
            return _error(413, f"the upload is over {serve.max_upload_mb:g} MB (serve.max_upload_mb)")
        if not data:
            return _error(400, "the upload is empty: the field 'file' holds no bytes")
        model = form.get("model")
        if model and model not in served:
            names = ", ".join(repr(n) for n in [cfg.model.name, *aliases])
            return _error(404, f"model {model!r} is not served here; this server serves {names} (serve.model_aliases)")
        language = form.get("language")
        if language and language != cfg.dataset.language:
            return _error(400, f"language {language!r}: this server transcribes {cfg.dataset.language!r}")
        response_format = form.get("response_format") or "json"
        if response_format not in FORMATS:
            return _error(400, f"response_format {response_format!r}: use json or text")
        stream = str(form.get("stream") or "false").lower() == "true"
        try:
            audio = await run_in_threadpool(decode_audio, data)
        except Exception as err:  # noqa: BLE001 - whatever soundfile makes of the bytes
            return _error(400, f"could not decode the audio: {type(err).__name__}: {err}".splitlines()[0])
        if problem := audio_problem(audio):
            return _error(400, f"unusable audio: {problem}")
        loop = asyncio.get_running_loop()
        job = Job(audio, loop, loop.create_future(), asyncio.Queue() if stream else None)
        if not batcher.submit(job):
            return _error(503, f"overloaded: {serve.max_queue} requests are queued (serve.max_queue)",
                          {"Retry-After": "1"})  # fmt: skip
        if stream:
            return StreamingResponse(_events(job), media_type="text/event-stream")
        try:
            transcript = await job.done
        except Exception as err:  # noqa: BLE001 - the engine failed on this clip
            return _error(500, f"the engine failed: {type(err).__name__}: {err}".splitlines()[0])
        if response_format == "text":
            return PlainTextResponse(transcript.text)
        usage = {"type": "duration", "seconds": len(audio) / SAMPLE_RATE}
        return JSONResponse({"text": transcript.text, "usage": usage})

    return app


async def _events(job: Job):
    """Server-sent events as OpenAI streams a transcription: text deltas, then the whole text."""
    while (delta := await job.stream.get()) is not END:
        yield f"data: {json.dumps({'type': 'transcript.text.delta', 'delta': delta})}\n\n"
    try:
        transcript = await job.done
    except Exception as err:  # noqa: BLE001
        yield f"data: {json.dumps({'type': 'error', 'error': {'message': str(err), 'code': 500}})}\n\n"
        return
    yield f"data: {json.dumps({'type': 'transcript.text.done', 'text': transcript.text})}\n\n"
    yield "data: [DONE]\n\n"


def load_engine(cfg):
    """The engine the config names, loaded and warm: its batch shape fixed at run.batch_size
    clips (as a run's plan does) and one batch run, so no request pays the cold start."""
    from bench.engines import engine_class
    from bench.host.hub_access import go_offline_if_unreachable
    from bench.pipeline.runner import resolve_device, resolve_dtype

    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    if offline := go_offline_if_unreachable(cfg):
        print(f"bench.serve: {offline}", file=sys.stderr)
    engine = engine_class(cfg.engine.name)(cfg.engine, cfg.model, device, dtype, cfg.dataset.language)
    engine.load()
    second = np.random.default_rng(0).normal(0, 0.01, SAMPLE_RATE).astype(np.float32)
    engine.plan([[len(second)] * cfg.run.batch_size])
    lengths = [len(second)] * cfg.run.batch_size
    targets = token_targets(engine, lengths, cfg.serve.random_tokens_per_second)
    engine.transcribe([second] * cfg.run.batch_size, targets, Clock(device))
    return engine


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

    from bench.config import REPO_DIR, ServeConfig

    def choices(group: str) -> str:
        names = sorted(p.stem for p in (REPO_DIR / "conf" / group).glob("*.yaml") if not p.stem.endswith("_schema"))
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
    check_group_choices(overrides)
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
    config = uvicorn.Config(app, host=serve.host, port=serve.port, log_level="warning", timeout_graceful_shutdown=None)
    GracefulServer(config).run()
    print("bench.serve: stopped after answering every accepted request", flush=True)
    return 0
