"""bench.load --serve: a bench.serve process on a free local port for the length of a load run."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager

from bench.errors import BenchError

READY_TIMEOUT_S = 1800  # loading full-size weights and warming a compiled engine can take minutes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_healthy(url: str, process: subprocess.Popen | None = None, timeout: float = READY_TIMEOUT_S) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise BenchError(f"bench.serve exited with status {process.returncode} before answering /health")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise BenchError(f"{url}/health did not answer within {timeout:g} s")


def stop(process: subprocess.Popen) -> int:
    """SIGTERM (bench.serve answers what it accepted, then exits), then wait."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


@contextmanager
def started(settings: str):
    """A bench.serve process with these settings on a free local port, healthy: its URL and
    the process (stopped on exit)."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "bench.serve",
        *shlex.split(settings),
        "serve.host=127.0.0.1",
        f"serve.port={port}",
    ]
    print("starting:", " ".join(command[1:]), flush=True)
    process = subprocess.Popen(command, env=os.environ.copy())
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", process)
        yield f"http://127.0.0.1:{port}", process
    finally:
        stop(process)


@contextmanager
def served(args):
    """The URL to load: args.url as given, or that of a bench.serve started with args.serve."""
    if args.url:
        yield args.url
        return
    with started(args.serve) as (url, _):
        yield url
