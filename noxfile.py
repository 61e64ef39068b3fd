"""Task runner. `python -m nox -s lint tests` is what CI runs (see .ci/run)."""

import os

import nox

nox.options.sessions = ["lint", "tests"]

# The CPU build of torch by default, so nothing pulls CUDA wheels on a CPU machine;
# a GPU host sets BENCH_TORCH=torch (or a CUDA-specific pin) to get the normal build.
TORCH = os.environ.get("BENCH_TORCH", "torch==2.13.0")


@nox.session(python=False)
def lint(session):
    session.run("python", "-m", "pip", "install", "-q", "ruff>=0.6")
    session.run("python", "-m", "ruff", "check", "bench", "tests", "noxfile.py")


@nox.session
def tests(session):
    session.install(TORCH)
    session.install("-e", ".[dev]")
    session.run(
        "python",
        "-m",
        "pytest",
        "-q",
        *session.posargs,
        env={"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"},
    )


@nox.session
def speed(session):
    """The Voxtral speed benchmark (meant for a GPU host): nox -s speed -- --batch-sizes 1 32"""
    session.install(TORCH)
    session.install("-e", ".")
    session.run("python", "-m", "bench.speed", *session.posargs)
