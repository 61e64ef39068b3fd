"""python -m bench.load --url URL [dataset=...] --concurrency 1,4,16: replay a dataset against
any OpenAI-compatible transcription endpoint (bench.serve, vLLM, ...) and write a run folder
per concurrency level: every request's latency, time to first text (with --stream), audio
seconds, status and transcript; throughput RTFx and latency percentiles with their 95% CIs;
with --slo-p99-s, goodput; from a server with /metrics (bench.serve), the batch sizes it formed
and its compiles after start-up.

    python -m bench.load --url http://127.0.0.1:8000 --concurrency 1,4,16 --out runs/load
    python -m bench.load --url http://gpu:8000 dataset=librispeech_test_clean run.limit=200 --stream
    python -m bench.load --url ... --rate 8 --arrival poisson      # open loop: 8 requests a second
    python -m bench.load --serve "engine=whisper_patched model=whisper_tiny_en" --concurrency 1,4,16
    python -m bench.load --url ... --slo-p99-s 2                    # goodput: the share answered in 2 s

Closed loop by default (each of `concurrency` clients sends its next clip when answered);
--rate R sends R a second (poisson or uniform gaps), at most `concurrency` in flight. Each
level stops after --requests requests or --duration seconds. Each finished request is
appended to requests.jsonl at once, so a client killed mid-run leaves a folder that --resume
continues. --serve starts bench.serve with those overrides on a free local port first.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from bench.data.audio import SAMPLE_RATE
from bench.errors import BenchError
from bench.online.load_folder import LEVEL_FILE, load_table, read_records, write_level
from bench.online.metrics import COMPILES, GRAPH_CAPTURES, UNCOMPILED, batch_sizes, gauge, samples

CLIENT_GAVE_UP = 499  # a request this client timed out on (--timeout), as bench.serve counts a client that left


def wav_bytes(audio: np.ndarray) -> bytes:
    """The clip as a 32-bit float WAV: the server decodes exactly the samples offline runs use."""
    out = io.BytesIO()
    sf.write(out, audio, SAMPLE_RATE, format="WAV", subtype="FLOAT")
    return out.getvalue()


async def send(client, url: str, model: str | None, audio: bytes, stream: bool, timeout: float) -> dict:
    """One request: status, text, error, latency and (streaming) time to first text."""
    import httpx

    data = {"response_format": "json", "stream": "true" if stream else "false", **({"model": model} if model else {})}
    files = {"file": ("clip.wav", audio, "audio/wav")}
    start = time.perf_counter()
    record = {"status": 0, "text": None, "error": None, "ttft_s": None}
    try:
        async with client.stream("POST", url, data=data, files=files, timeout=timeout) as response:
            record["status"] = response.status_code
            if response.status_code != 200:
                body = (await response.aread()).decode(errors="replace")
                record["error"] = _message(body)
            elif stream:
                record["text"], record["ttft_s"] = await _read_events(response, start)
            else:
                record["text"] = json.loads(await response.aread())["text"]
    except Exception as err:  # noqa: BLE001 - a refused connection or a timeout is a result too
        if isinstance(err, httpx.TimeoutException):  # this client gave up: counted apart, as the server counts it
            record["status"] = CLIENT_GAVE_UP
        record["error"] = f"{type(err).__name__}: {err}".splitlines()[0]
    record["latency_s"] = time.perf_counter() - start
    return record


def _message(body: str) -> str:
    try:
        error = json.loads(body)
        return str(error.get("error", {}).get("message") or error.get("detail") or body)[:300]
    except (json.JSONDecodeError, AttributeError):
        return body[:300]


async def _read_events(response, start: float) -> tuple[str, float | None]:
    """Server-sent events in OpenAI's transcription form (transcript.text.delta / .done) or in
    vLLM's chat-chunk form (choices[0].delta.content); the time the first text delta arrived,
    None when none did (the whole text came in the closing event: there was no first text to time)."""
    deltas, done, first = [], None, None
    async for line in response.aiter_lines():
        if not line.startswith("data:") or line[5:].strip() == "[DONE]":
            continue
        event = json.loads(line[5:])
        if event.get("type") == "transcript.text.done":
            done = event["text"]
            continue
        delta = event.get("delta") if "type" in event else (event.get("choices") or [{}])[0].get("delta", {})
        text = delta.get("content") if isinstance(delta, dict) else delta
        if text:
            first = first if first is not None else time.perf_counter() - start
            deltas.append(text)
    text = done if done is not None else "".join(deltas).strip()
    return text, first


def scrape(base_url: str) -> dict | None:
    """The server's /metrics, parsed (None: it has none, or not in Prometheus' text format)."""
    import httpx

    try:
        response = httpx.get(f"{base_url}/metrics", timeout=30)
        return samples(response.text) if response.status_code == 200 else None
    except Exception:  # noqa: BLE001 - an endpoint without /metrics is still measured
        return None


def server_metrics(before: dict | None, after: dict | None) -> dict:
    """What the server says it did during a session: the batch sizes it formed, and its
    compiles (and CUDA graph captures) since start-up, and the decodes it ran uncompiled at a shape
    its warm-up did not make; None where it does not say."""
    if before is None or after is None:
        return {"batch_sizes": None, "compiles_after_startup": None, "graph_captures_after_startup": None,
                "uncompiled_decodes_after_startup": None}  # fmt: skip
    return {"batch_sizes": batch_sizes(before, after), "compiles_after_startup": gauge(after, COMPILES),
            "graph_captures_after_startup": gauge(after, GRAPH_CAPTURES),
            "uncompiled_decodes_after_startup": gauge(after, UNCOMPILED)}  # fmt: skip


async def run_level(url, model, clips, level: int, args, folder: Path, done: set[int]) -> None:
    """Send the level's requests not in `done`, appending each result to the folder's log, and
    after them what the server's /metrics say it did meanwhile."""
    import httpx

    rng = np.random.default_rng(args.seed + level)
    todo = [i for i in range(args.requests) if i not in done]
    limits = httpx.Limits(max_connections=level, max_keepalive_connections=level)
    slots, started = asyncio.Semaphore(level), time.perf_counter()
    session = {"started": time.time(), "requests": len(todo)}
    base_url = url.removesuffix("/v1/audio/transcriptions")
    before = await asyncio.to_thread(scrape, base_url)
    with (folder / LEVEL_FILE).open("a") as log:
        log.write(json.dumps({"session": session}) + "\n")
        log.flush()

        async def one(i: int, client) -> None:
            async with slots:
                if args.duration and time.perf_counter() - started > args.duration:
                    return  # the level's time is up: not sent, not recorded
                utterance, payload = clips[i % len(clips)]
                sent = time.time()
                record = await send(client, url, model, payload, args.stream, args.timeout)
                record |= {"i": i, "id": utterance.id, "audio_s": utterance.duration_s, "sent": sent,
                           "ended": time.time()}  # fmt: skip
                log.write(json.dumps(record) + "\n")
                log.flush()

        async with httpx.AsyncClient(limits=limits) as client:
            tasks = []
            for i in todo:
                if args.rate:
                    gap = rng.exponential(1 / args.rate) if args.arrival == "poisson" else 1 / args.rate
                    await asyncio.sleep(gap)
                tasks.append(asyncio.create_task(one(i, client)))
            await asyncio.gather(*tasks)
        after = await asyncio.to_thread(scrape, base_url)
        log.write(json.dumps({"server_metrics": server_metrics(before, after)}) + "\n")


def served_model(url: str, wanted: str | None) -> dict:
    """The model card the endpoint lists (GET /v1/models): the one named, or its first."""
    import httpx

    try:
        cards = httpx.get(f"{url}/v1/models", timeout=30).json()["data"]
    except Exception as err:  # noqa: BLE001
        raise BenchError(f"{url}/v1/models did not answer with a model list ({err}); is the server up?") from err
    card = next((c for c in cards if c.get("id") == wanted), None) if wanted else (cards[0] if cards else None)
    if card is None:
        raise BenchError(f"{url} serves {[c.get('id') for c in cards]}, not {wanted!r}")
    root = next((c for c in cards if c.get("id") == card.get("root")), None)
    return {**root, "id": card["id"]} if root else card  # an alias (whisper-1): what serves it is its root's


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "overrides", nargs="*", help="dataset settings as for python -m bench (dataset=..., run.limit=...)"
    )
    parser.add_argument("--url", help="the server's base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--serve", help="start bench.serve with these overrides (quoted) instead of --url")
    parser.add_argument("--model", help="the model to ask for (default: the first /v1/models lists)")
    parser.add_argument("--concurrency", default="1,4,16", help="levels, comma-separated (default 1,4,16)")
    parser.add_argument("--rate", type=float, help="open loop: requests per second (default: closed loop)")
    parser.add_argument("--arrival", choices=("poisson", "uniform"), default="poisson")
    parser.add_argument("--requests", type=int, help="requests per level (default: one per clip)")
    parser.add_argument("--duration", type=float, help="seconds per level at most")
    parser.add_argument("--stream", action="store_true", help="ask for streamed text: records time to first text")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds one request may take")
    parser.add_argument("--slo-p99-s", type=float, help="a latency objective: goodput is the share of requests "
                        "answered within it (as vllm bench serve's --goodput)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("runs/load") / time.strftime("%Y-%m-%d/%H-%M-%S"))
    parser.add_argument("--resume", action="store_true", help="continue the levels a killed client left")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from bench.data import load_utterances
    from bench.lab.grid import compose
    from bench.online.serve_process import served

    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if bool(args.url) == bool(args.serve):
            raise BenchError("give --url URL (a running server) or --serve 'OVERRIDES' (start bench.serve)")
        levels = [int(c) for c in args.concurrency.split(",")]
        if min(levels) < 1:
            raise BenchError(f"--concurrency {args.concurrency}: every level must be at least 1")
        cfg = compose(args.overrides)
        utterances = load_utterances(cfg.dataset, cfg.run.limit, progress=False)
        args.requests = args.requests or len(utterances)
        clips = [(u, wav_bytes(u.audio)) for u in utterances]
        with served(args) as url:
            url = url.rstrip("/")
            card = served_model(url, args.model)
            folders = []
            for level in levels:
                folder = args.out / f"c{level}"
                done = _prepare(folder, args.resume)
                if len(done) < args.requests:
                    print(f"concurrency {level}: {args.requests - len(done)} requests to {url}", flush=True)
                    asyncio.run(
                        run_level(f"{url}/v1/audio/transcriptions", card["id"], clips, level, args, folder, done)
                    )
                write_level(folder, cfg, utterances, card, url, level, args)
                folders.append(folder)
    except BenchError as err:
        print(f"bench.load: error: {err}", file=sys.stderr)
        return 2
    table = load_table(folders)
    (args.out / "load.md").write_text(table)
    print(table)
    print(f"run folders: {', '.join(map(str, folders))}")
    return 0


def _prepare(folder: Path, resume: bool) -> set[int]:
    """The requests an earlier session of this level finished (with --resume)."""
    if (folder / LEVEL_FILE).exists() and not resume:
        raise BenchError(f"{folder} already holds a load run: continue it with --resume, or choose another --out")
    folder.mkdir(parents=True, exist_ok=True)
    done = {r["i"] for r in read_records(folder)}
    if done:
        print(f"resuming {folder}: {len(done)} requests were answered before")
    return done
