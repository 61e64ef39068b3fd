"""python -m bench.lab.short_behind_long: how long a short request waits behind a long clip.

bench.serve runs a long clip as steps (a 30 s window each) and other batches between them, so
a short request that comes while a long clip runs should wait about one window's work, not
the whole clip. This starts bench.serve (--serve, as bench.load takes it), and for each long
clip (noise, silence, a silent FLAC of 29 minutes) sends it, waits until its batch has begun
(the server's batch count), sends a 2 s clip, and times that short request; then the long
clip's own answer, the graphs the server compiled meanwhile (a wait that holds a compile is
not the engine's step) and the decodes it ran uncompiled instead (bench.serve compiles nothing
after its warm-up: a shape it did not make runs uncompiled), and the server's peak resident
memory so far (Linux's VmHWM: a case that holds more than the ones before raises it). With
--keep-sending S, short requests go on being sent one after another for S seconds from the
first: their longest wait is the wait behind the long clip's longest step in that span,
wherever it falls (the first short request meets only its first steps; a long clip's heavy
steps, its encoder and prefill, come early).
It prints one table (docs/serving.md quotes it):

    python -m bench.lab.short_behind_long --serve "engine=whisper_patched model=whisper_tiny_en run.batch_size=4"
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROUTE = "/v1/audio/transcriptions"
CASES = {  # name: (seconds, kind)
    "10 min of noise": (600, "noise"),
    "10 min of silence": (600, "silence"),
    "29 min of silence (FLAC)": (1740, "silence"),
}


def clip(seconds: float, kind: str, seed: int = 0) -> bytes:
    samples = int(seconds * 16_000)
    if kind == "noise":
        audio = np.random.default_rng(seed).normal(0, 0.05, samples).astype(np.float32)
    else:
        audio = np.zeros(samples, np.float32)
    out = io.BytesIO()
    sf.write(out, audio, 16_000, format="FLAC" if seconds > 60 else "WAV")
    return out.getvalue()


def metric(metrics: str, name: str) -> float:
    """A metric's value summed over its label sets, from the server's /metrics page."""
    return sum(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(name))


def made_after_startup(metrics: str) -> tuple[float, float]:
    """The server's graphs compiled, and decodes run uncompiled (at a shape its warm-up did not
    make), since it started."""
    return metric(metrics, "bench_compiles_after_startup"), metric(metrics, "bench_uncompiled_decodes_after_startup")


def batches_begun(metrics: str) -> float:
    """The server's count of batches it has started (its batch-size histogram's count)."""
    return metric(metrics, "bench_batch_size_count")


async def one_case(url: str, long_clip: bytes, short_clip: bytes, keep_sending: float = 0.0):
    """The short request's wait, the long clip's answer time, the graphs the server compiled and
    the decodes it ran uncompiled meanwhile (a long clip of a new length is a new shape on some
    engines), and with keep_sending (seconds) the waits of the short requests sent one after
    another after the first for that long, while the long clip was not yet answered."""
    import httpx

    async with httpx.AsyncClient(timeout=3600) as client:
        post = lambda data: client.post(f"{url}{ROUTE}", files={"file": ("a.flac", data)})  # noqa: E731
        metrics = (await client.get(f"{url}/metrics")).text
        before, made = batches_begun(metrics), made_after_startup(metrics)
        began = time.perf_counter()
        long_request = asyncio.create_task(post(long_clip))
        while batches_begun((await client.get(f"{url}/metrics")).text) <= before:  # the long clip's batch begun
            await asyncio.sleep(0.02)
        sent = time.perf_counter()
        short = await post(short_clip)
        waited, later, first_sent = time.perf_counter() - sent, [], sent
        while time.perf_counter() < first_sent + keep_sending and not long_request.done():
            sent = time.perf_counter()
            assert (await post(short_clip)).status_code == 200
            later.append(time.perf_counter() - sent)
        answered = await long_request
        assert short.status_code == 200 and answered.status_code == 200, (short.text, answered.text)
        answered_s = time.perf_counter() - began
        now = made_after_startup((await client.get(f"{url}/metrics")).text)
        return waited, answered_s, tuple(int(n - m) for n, m in zip(now, made, strict=True)), later


def whisper_faster_path() -> str:
    """The faster path of a Whisper engine: the engine that decodes a long clip in windows, fast."""
    from bench.engines import engine_config_classes, faster_paths

    return next(name for name in sorted(faster_paths()) if engine_config_classes()[name].family == "whisper")


def peak_gb(pid: int) -> float | None:
    """The process's peak resident memory so far, from Linux's /proc (None elsewhere)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    return kib / 2**20


def main(argv: list[str] | None = None) -> int:
    from bench.online.serve_process import started

    parser = argparse.ArgumentParser(prog="python -m bench.lab.short_behind_long", description=__doc__.split("\n")[0])
    default = f"engine={whisper_faster_path()} model=whisper_tiny_en run.batch_size=4 serve.max_queue=32"
    parser.add_argument("--serve", default=default, help="bench.serve's settings (default: Whisper's faster path)")
    parser.add_argument(
        "--keep-sending",
        type=float,
        default=0.0,
        metavar="S",
        help="send short requests one after another for S seconds from the first (while the long clip runs)",
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    short_clip = clip(2, "noise", seed=1)
    rows = []
    with started(args.serve) as (url, process):
        pid = process.pid
        alone, _, made, _ = asyncio.run(one_case(url, clip(2, "noise", seed=2), short_clip))  # behind a short one
        rows.append(("2 s of noise (a short clip)", 2, alone, None, made, peak_gb(pid), []))
        for name, (seconds, kind) in CASES.items():
            waited, long_s, made, later = asyncio.run(one_case(url, clip(seconds, kind), short_clip, args.keep_sending))
            rows.append((name, seconds, waited, long_s, made, peak_gb(pid), later))
    sending = f", then 2 s requests one after another for {args.keep_sending:g} s" if args.keep_sending else ""
    print(f"bench.serve {args.serve}: a 2 s request sent once the long clip's batch had begun{sending}")
    print()
    columns = ["long clip", "seconds", "the short request's wait, s", "the long clip's answer, s",
               "graphs compiled meanwhile", "decodes run uncompiled meanwhile",
               "server's peak memory so far, GiB"]  # fmt: skip
    if args.keep_sending:
        columns += ["short requests after it", "their median wait, s", "their longest wait, s"]
    print("| " + " | ".join(columns) + " |")
    print("|---" * len(columns) + "|")
    for name, seconds, waited, long_s, (compiled, uncompiled), peak, later in rows:
        answer = "" if long_s is None else f"{long_s:.1f}"
        memory = "n/a" if peak is None else f"{peak:.2f}"
        cells = [name, seconds, f"{waited:.2f}", answer, compiled, uncompiled, memory]
        if args.keep_sending:
            cells += [len(later), *(["", ""] if not later else [f"{np.median(later):.2f}", f"{max(later):.2f}"])]
        print("| " + " | ".join(map(str, cells)) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
