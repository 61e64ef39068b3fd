"""Task runner. `python -m nox -s lint tests gate report_browser` is what CI runs (see .ci/run)."""

import os
import shutil
from pathlib import Path

import nox

nox.options.sessions = ["lint", "tests", "gate", "report_browser"]

# The CPU build of torch by default, so nothing pulls CUDA wheels on a CPU machine;
# a GPU host sets BENCH_TORCH=torch (or a CUDA-specific pin) to get the normal build.
TORCH = os.environ.get("BENCH_TORCH", "torch==2.13.0")
# ORT_DISABLE_TELEMETRY: faster-whisper imports onnxruntime (its voice-activity model)
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "ORT_DISABLE_TELEMETRY": "1"}


@nox.session(python=False)
def lint(session):
    session.run("python", "-m", "pip", "install", "-q", "ruff>=0.6")
    session.run("python", "-m", "ruff", "check", "bench", "tests", "noxfile.py")


# One pytest worker per core (pytest-xdist), each test file whole on one worker so a module's
# fixtures (a loaded engine, a running server) are built once; tests/conftest.py gives each
# worker one thread. On the project's 2-core machine: 22.9 min, where one process took 26.6 min.
PARALLEL = ["-n", "auto", "--dist", "loadfile"]


@nox.session
def tests(session):
    session.install(TORCH)
    session.install("-e", ".[dev,real,voice]")
    session.run("python", "-m", "pytest", "-q", *PARALLEL, *session.posargs, env=OFFLINE)


@nox.session
def tests_fast(session):
    """The tests under 10 s each (the ones marked slow left out): about 2 minutes on 2 cores."""
    session.install(TORCH)
    session.install("-e", ".[dev,real,voice]")
    session.run("python", "-m", "pytest", "-q", "-m", "not slow", *PARALLEL, *session.posargs, env=OFFLINE)


@nox.session
def speed(session):
    """The Voxtral speed benchmark (meant for a GPU host): nox -s speed -- --batch-sizes 1 32"""
    session.install(TORCH)
    session.install("-e", ".")
    session.run("python", "-m", "bench.speed", *session.posargs)


def _fresh_tmp(session, name: str) -> str:
    """An empty folder of that name in the session's tmp (a reused session, -r, keeps the last one)."""
    path = os.path.join(session.create_tmp(), name)
    session.run("rm", "-rf", path, external=True)
    return path


# The rehearsal of a reference plan spread over leases: the plan of `tests/test_reference.py`'s
# rehearsal widened to every random-weight engine, the batch-1 ablation and a load stage of two
# levels, measured as the GPU measures it (3 repeats, 4 clips a run as on the H200), at tiny scale
# on the CPU.
LEASE_PLAN = ["--scale", "tiny", "--device", "cpu", "--datasets", "synthetic", "--batch-sizes", "1", "2",
              "--ablation-batch-sizes", "1", "--load-concurrency", "1", "4", "--repeats", "3", "--min-clips", "4",
              "--quiet"]  # fmt: skip


@nox.session(python=False)
def lease_rehearsal(session):
    """What a compile cache carried from lease to lease saves: the reference plan above, measured
    in calls of `--budget-minutes` (3 by default; nox -s lease_rehearsal -- 2), the same command
    again until it exits 0, as leases of a GPU measure it. Once with a fresh compile cache for
    every call (each lease a new machine: what a lease got before --compile-cache), once with one
    cache carried from call to call. Prints each call's wall minutes and, per way, the minutes of
    the whole plan and of its first warm-up batches (where compiles happen). Runs in the current
    environment (bench installed), about 25 minutes on 2 cores."""
    import json
    import subprocess
    import sys
    import time

    budget = session.posargs[0] if session.posargs else "3"
    totals = {}
    for way in ("fresh cache each call", "cache carried"):
        root = _fresh_tmp(session, way.split()[0])
        out, calls, wall, code = os.path.join(root, "reference"), 0, 0.0, 3
        while code == 3:  # bench.reference's INCOMPLETE: the budget stopped it
            calls += 1
            cache = os.path.join(root, f"inductor-{calls}" if way.startswith("fresh") else "inductor")
            command = [sys.executable, "-m", "bench.reference", "--out", out, *LEASE_PLAN]
            began = time.perf_counter()
            done = subprocess.run([*command, "--budget-minutes", budget, "--compile-cache", cache],
                                  env={**os.environ, **OFFLINE}, capture_output=True, text=True)  # fmt: skip
            took = time.perf_counter() - began
            wall, code = wall + took, done.returncode
            said = [ln for ln in done.stdout.splitlines() if ln.startswith(("Where the minutes", "compile cache"))]
            session.log(f"{way}, call {calls}: exit {code}, {took / 60:.2f} min; " + " ".join(said))
            if code not in (0, 3):
                session.error(done.stdout[-2000:] + done.stderr[-2000:])
        summaries = [json.loads(p.read_text()) for p in Path(out).glob("runs/*/*/summary.json")]
        first = sum(s["cold_start_seconds"] or 0.0 for s in summaries)
        served = len(list(Path(out).glob("load/*/point.json")))  # the load stage's points
        totals[way] = (calls, len(summaries) + served, wall, first)
    session.log("| way | calls | points (runs, loads) | minutes | min per point | runs' first warm-up batches, min |")
    session.log("|---|---|---|---|---|---|")
    for way, (calls, points, wall, first) in totals.items():
        session.log(f"| {way} | {calls} | {points} | {wall / 60:.2f} | {wall / 60 / points:.3f} | {first / 60:.2f} |")


@nox.session(python="3.12")
def gpu_host_rehearsal(session):
    """Rehearse a lent GPU host's set-up on any CPU machine, before spending device time on it:
    a Python 3.12 environment with the host's own packages (.whl/host-requirements.txt, pinned to
    the image's versions where known; torch 2.11's CUDA wheels, a few GB), the wheelhouse installed
    over it as the device command does, every module a GPU plan imports imported from there and the
    wheels' size checked (bench.wheelhouse --check), then the tiny float32 agreement check on the CPU (with each
    compile scope of voxtral_patched) and a tiny openai_whisper run in bfloat16, the GPU runs' dtype.
    Build the wheelhouse first: python -m bench.wheelhouse --out .whl"""
    if not os.path.exists(".whl/host-requirements.txt"):
        session.error("no .whl/host-requirements.txt: run python -m bench.wheelhouse --out .whl first")
    session.install("-r", ".whl/host-requirements.txt")
    site = _fresh_tmp(session, "site")
    wheels = [os.path.join(".whl", name) for name in sorted(os.listdir(".whl")) if name.endswith(".whl")]
    session.run("python", "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target", site, *wheels)
    env = {**OFFLINE, "PYTHONPATH": os.pathsep.join([os.path.abspath(site), os.getcwd()])}
    # every module a GPU plan imports (the server and load generator, NVML, prometheus_client), and the size
    session.run("python", "-m", "bench.wheelhouse", "--check", "--out", ".whl", env=env)
    agreement = ["--scale", "tiny", "--dtype", "float32", "--device", "cpu", "--limit", "8", *session.posargs]
    session.run("python", "-m", "bench.agreement", *agreement, env=env)
    # again with the compile scope a CUDA graph gets (one compiled decoder layer for all)
    session.run("python", "-m", "bench.agreement", *agreement, "--compile-scope", "layers", env=env)
    # the rest of the stack: Hydra's command line, openai-whisper (numba, tiktoken), jiwer
    whisper = ["engine=openai_whisper", "model.weights=random", "model.scale=tiny", "device=cpu", "dtype=bfloat16"]
    run_dir = _fresh_tmp(session, "whisper")
    session.run("python", "-m", "bench", *whisper, "run.limit=2", f"hydra.run.dir={run_dir}", env=env)


# The CI smoke benchmark: patched and stock Voxtral at tiny scale, measured in turns batch by
# batch (run.paired_with) so the machine's drift cancels in their speed-up, which is what the
# gate checks against the committed baseline. About 30 s on a 2-core CPU.
SMOKE_RUN = [
    "engine=voxtral_patched",
    "run.paired_with=[voxtral_stock]",
    "model.weights=random",
    "model.scale=tiny",
    "dataset=synthetic",
    "dataset.n_clips=16",
    "dataset.words_per_second=0.3",  # short transcripts: the tiny model's decode is lm_head-bound on a CPU
    "run.batch_size=4",
    "run.repeats=3",
    "run.progress=false",
]
CI_BASELINE = "results/baselines/ci_cpu_tiny.json"
CI_POWER = "results/baselines/ci_cpu_tiny_power.md"  # nox -s gate_power: what that baseline's gate catches
BASELINE_SMOKE_RUNS = 3


def _smoke(session, *names: str) -> list[str]:
    """One fresh smoke run per name, in the session's tmp folder; their run folders."""
    session.install(TORCH)
    session.install("-e", ".")
    run_dirs = [_fresh_tmp(session, name) for name in names]
    for run_dir in run_dirs:
        session.run("python", "-m", "bench", *SMOKE_RUN, *session.posargs, f"hydra.run.dir={run_dir}", env=OFFLINE)
    return run_dirs


@nox.session
def gate(session):
    """CI smoke gate: the same-run patched/stock speed-up must not drop beyond noise (nox -s gate)."""
    (run_dir,) = _smoke(session, "smoke")
    session.run("python", "-m", "bench.gate", "--baseline", CI_BASELINE, "--ratios-only", "--candidate", run_dir)


@nox.session
def gate_power(session):
    """The smallest slowdown the CI gate catches 19 times in 20 on this machine, measured: fresh
    smoke runs (BENCH_POWER_RUNS, default 20), each gated against the committed baseline with
    every slowdown of bench.gate_power injected into voxtral_patched (about 7 min on 2 cores)."""
    runs = _smoke(session, *(f"smoke-power-{i}" for i in range(int(os.environ.get("BENCH_POWER_RUNS", "20")))))
    out = ["--out", CI_POWER] if not session.posargs else []  # the committed table is of the plain smoke run
    session.run("python", "-m", "bench.gate_power", "--baseline", CI_BASELINE, "--ratios-only", *out, *runs)


@nox.session
def gate_baseline(session):
    """Rewrite the CI baseline from fresh smoke runs (commit it with the change that moved it)."""
    # Several runs, pooled: the speed-up moves by some 10% from one smoke run to the next on
    # the 2-core CPU, and a baseline from one run may sit at either edge of that spread.
    runs = _smoke(session, *(f"smoke-baseline-{i}" for i in range(BASELINE_SMOKE_RUNS)))
    session.run("python", "-m", "bench.gate", "--write-baseline", *runs, "--out", CI_BASELINE)


# bench.report --html on committed runs, each page opened in headless Chromium (report_browser)
H200_RUNS = "results/reference/h200/runs/synthetic"
BROWSER_REPORTS = {
    # the H200 grid at batch 1 and 32 (4 and 64 clips: --allow-mixed), priced at an example rate
    "h200": [*(f"{H200_RUNS}/{engine}_b*" for engine in ("voxtral_stock", "voxtral_patched", "voxtral_compile",
                                                         "whisper_large_v3")),
             "--allow-mixed", "--gpu-hourly-price", "3.50"],
    "cpu-real-weights": ["results/real_weights/cpu/run"],  # real WERs: the Pareto plot
}  # fmt: skip


@nox.session
def docs(session):
    """docs/ as a site (MkDocs, Material theme; mkdocs.yml) built with --strict: a broken link
    or anchor, or a page the nav leaves out, fails the build (a few seconds)."""
    session.install("mkdocs-material>=9.5")
    site = _fresh_tmp(session, "site")
    session.run("mkdocs", "build", "--strict", "--site-dir", site, env={"NO_MKDOCS_2_WARNING": "1"})


def _ensure_chromium(session) -> None:
    """Chromium for report_browser: BENCH_CHROMIUM's, or Debian's package, installed here when
    this user may (root, apt-get present); otherwise stop with what to run."""
    if "BENCH_CHROMIUM" in os.environ or shutil.which("chromium"):
        return
    if shutil.which("apt-get") and os.geteuid() == 0:
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        try:
            session.run("apt-get", "install", "-y", "-q", "chromium", external=True, env=env, silent=True)
        except nox.command.CommandFailed:  # an image without package lists yet
            session.run("apt-get", "update", "-q", external=True, env=env, silent=True)
            session.run("apt-get", "install", "-y", "-q", "chromium", external=True, env=env, silent=True)
        return
    session.error("report_browser needs Chromium: `sudo apt-get install chromium` (Debian, Ubuntu), or set "
                  "BENCH_CHROMIUM to a Chromium or Chrome binary")  # fmt: skip


@nox.session
def report_browser(session):
    """Each page bench.report --html writes for committed runs, rendered in headless Chromium
    (Debian's chromium package; BENCH_CHROMIUM names another): fails on a console error, a
    failed request, a table without rows or an image that does not decode (about 1 min).
    `nox -s report_browser -- --docs` also writes the screenshots under docs/report/."""
    _ensure_chromium(session)
    session.install(TORCH)
    session.install("-e", ".", "playwright>=1.45")
    docs = "--docs" in session.posargs
    for name, args in BROWSER_REPORTS.items():
        out = _fresh_tmp(session, f"report-{name}")
        session.run("python", "-m", "bench.report", *args, "--out", out, "--html", env=OFFLINE, silent=True)
        shots = ["--screenshots", os.path.join("docs", "report", name)] if docs else []
        session.run("python", "-m", "bench.lab.html_check", os.path.join(out, "report.html"), *shots)
