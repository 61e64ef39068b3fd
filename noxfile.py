"""Task runner. The README's test command is `python -m nox -s lint docs tests gate report_browser`;
CI (.ci/run) runs it, then `nox -s tests_slow`.

Every session but the two that try other versions (latest, lock) and the GPU host's stand-in
(gpu_host_rehearsal) runs in one environment, .nox/shared, built once from constraints.txt (the
versions the tests passed with) and rebuilt only when that file, pyproject.toml or the extras
change: torch is installed once, not once per session."""

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nox

nox.options.sessions = ["lint", "docs", "tests", "gate", "report_browser"]

# The versions the tests passed with, for every install bench's own commands make: the shared
# environment, the README's install, .ci/run's nox (`nox -s lock` writes it, docs/install.md).
LOCK = Path("constraints.txt")
SHARED = Path(".nox") / "shared"
EXTRAS = "dev,real,voice,docs,browser"
# torch as the lock pins it, so a CPU machine takes the CPU build that lies on its disk (or the
# one pip's index gives) and a GPU host the CUDA build of the same release from PyPI; BENCH_TORCH
# names another torch (a host's own build), and the lock's torch line is then left out
TORCH = os.environ.get("BENCH_TORCH", "torch")
# ORT_DISABLE_TELEMETRY: faster-whisper imports onnxruntime (its voice-activity model)
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "ORT_DISABLE_TELEMETRY": "1"}


def _locked(session) -> dict[str, str]:
    """The pip settings that hold an install to the lock, build environments included (pip passes
    PIP_CONSTRAINT on to the pip that installs a source package's build requirements)."""
    if not LOCK.exists():
        session.error(f"no {LOCK}: write it with `python -m nox -s lock`")
    lock = LOCK.resolve()
    if "BENCH_TORCH" in os.environ:
        lock = Path(".nox", "constraints-without-torch.txt").resolve()
        lock.parent.mkdir(exist_ok=True)
        lines = [line for line in LOCK.read_text().splitlines() if not line.startswith("torch==")]
        lock.write_text("\n".join(lines) + "\n")
    return {"PIP_CONSTRAINT": str(lock), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def _shared(session) -> str:
    """The shared environment's python, built from the lock if it is missing or out of date."""
    python = SHARED / "bin" / "python"
    stamp = SHARED / "bench-installed"
    wanted = hashlib.sha256(b"".join(Path(f).read_bytes() for f in (LOCK, "pyproject.toml"))
                            + f"{TORCH} [{EXTRAS}]".encode()).hexdigest()  # fmt: skip
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return str(python)
    if not python.exists():
        session.run(sys.executable, "-m", "venv", str(SHARED), external=True)
    pip, locked = [str(python), "-m", "pip", "install", "-q"], _locked(session)
    session.run(*pip, TORCH, external=True, env=locked)  # alone first: nothing else may pick torch
    session.run(*pip, "-e", f".[{EXTRAS}]", external=True, env=locked)
    stamp.write_text(wanted)
    return str(python)


def _run(session, *args: str, env: dict | None = None, cwd: str | None = None, **kwargs) -> None:
    """A command in the shared environment: `python ...` there, its bin first on PATH (in `cwd`)."""
    python = os.path.abspath(_shared(session))  # not resolve(): the venv's python is a link
    path = os.pathsep.join([os.path.dirname(python), os.environ.get("PATH", "")])
    with session.chdir(cwd) if cwd else contextlib.nullcontext():
        session.run(python, *args, external=True, env={"PATH": path, **(env or {})}, **kwargs)


@nox.session(python=False)
def lint(session):
    _run(session, "-m", "ruff", "check", "bench", "tests", "noxfile.py")


# One pytest worker per core (pytest-xdist), each test file whole on one worker so a module's
# fixtures (a loaded engine, a running server) are built once; tests/conftest.py gives each
# worker one thread.
PARALLEL = ["-n", "auto", "--dist", "loadfile"]


@nox.session(python=False)
def tests(session):
    """The tests that take under 10 s each (those marked slow left out): the README's default."""
    _run(session, "-m", "pytest", "-q", "-m", "not slow", *PARALLEL, *session.posargs, env=OFFLINE)


@nox.session(python=False)
def tests_slow(session):
    """The tests marked slow (a subprocess, a sweep, a compile, real weights): CI runs them after
    the README's test command."""
    _run(session, "-m", "pytest", "-q", "-m", "slow", *PARALLEL, *session.posargs, env=OFFLINE)


def _fresh_tmp(session, name: str) -> str:
    """An empty folder of that name in the session's tmp (a reused session, -r, keeps the last one)."""
    path = os.path.join(session.create_tmp(), name)
    session.run("rm", "-rf", path, external=True)
    return path


def _install_latest(session) -> None:
    """bench and every extra at the newest versions a resolver picks today (torch as the lock
    pins it: its newest release is a CUDA build of several GB on a CPU machine)."""
    pinned = [line for line in LOCK.read_text().splitlines() if line.startswith("torch==")] if LOCK.exists() else []
    torch = pinned[0] if pinned else "torch==2.13.0"  # no lock yet: the CPU build on this kind of machine's disk
    session.install("-U", "pip", "setuptools")  # a fresh venv's bundled setuptools is older than bench builds with
    session.install(torch)
    session.install("-e", f".[{EXTRAS}]", *session.posargs)


def _pins(text: str) -> dict[str, str]:
    """{name: version} of `name==version` lines (comments and blank lines skipped)."""
    pins = {}
    for line in text.splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[name.strip().lower().replace("_", "-")] = version.split("+")[0].strip()
    return pins


def _differences(locked: dict[str, str], latest: dict[str, str]) -> list[str]:
    names = sorted(set(locked) | set(latest))
    return [f"| {n} | {locked.get(n, '-')} | {latest.get(n, '-')} |" for n in names if locked.get(n) != latest.get(n)]


def _frozen(session) -> dict[str, str]:
    text = session.run("python", "-m", "pip", "freeze", "--all", "--exclude-editable", silent=True)
    return {n: v for n, v in _pins(text).items() if n not in ("pip", "bench")}


@nox.session
def latest(session):
    """What the newest releases of bench's dependencies break, without touching the lock: installs
    them in a fresh environment, lists every version that differs from constraints.txt, then runs
    the default tests there (nox -s latest; CI does not run it). Exits 1 if a test fails."""
    _install_latest(session)
    changed = _differences(_pins(LOCK.read_text()), _frozen(session))
    session.log(f"{len(changed)} package(s) differ from {LOCK}:")
    for line in ["| package | locked | latest |", "|---|---|---|", *changed]:
        session.log(line)
    # the one test that holds an environment to the lock, which this one is not by design
    unlocked = "--deselect=tests/test_lock.py::test_the_installed_versions_are_the_locked_ones"
    session.run("python", "-m", "pytest", "-q", "-m", "not slow", *PARALLEL, unlocked, env=OFFLINE)


@nox.session
def lock(session):
    """Write constraints.txt from the newest releases (nox -s lock; `-- 'pkg<X'` holds one back),
    then run `nox -s tests tests_slow` on it before committing it. Local version labels (torch's
    +cpu) are dropped, so a GPU host takes the CUDA build of the same release."""
    _install_latest(session)
    old = _pins(LOCK.read_text()) if LOCK.exists() else {}
    new = _frozen(session)
    header = (
        "# The versions bench's tests passed with (Linux x86_64, CPython 3.11): every install in the\n"
        "# README, .ci/run and noxfile.py is held to them. Written by `python -m nox -s lock` (docs/install.md).\n"
    )
    LOCK.write_text(header + "".join(f"{name}=={version}\n" for name, version in sorted(new.items())))
    changed = _differences(old, new)
    session.log(f"{LOCK}: {len(new)} packages, {len(changed)} changed")
    for line in changed:
        session.log(line)


@nox.session(python=False)
def speed(session):
    """The Voxtral speed benchmark (meant for a GPU host): nox -s speed -- --batch-sizes 1 32"""
    _run(session, "-m", "bench.speed", *session.posargs)


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
    shared environment, about 25 minutes on 2 cores."""
    import json
    import subprocess
    import time

    budget = session.posargs[0] if session.posargs else "3"
    totals = {}
    for way in ("fresh cache each call", "cache carried"):
        root, python = _fresh_tmp(session, way.split()[0]), _shared(session)
        out, calls, wall, code = os.path.join(root, "reference"), 0, 0.0, 3
        while code == 3:  # bench.reference's INCOMPLETE: the budget stopped it
            calls += 1
            cache = os.path.join(root, f"inductor-{calls}" if way.startswith("fresh") else "inductor")
            command = [python, "-m", "bench.reference", "--out", out, *LEASE_PLAN]
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


# The verdict stage of a lease (issue 49): every random-weight engine at batch 1 and a larger
# batch on the synthetic clips, both fast paths profiled, their ceilings, at tiny scale on the CPU.
VERDICT_PLAN = ["--scale", "tiny", "--device", "cpu", "--datasets", "synthetic", "--batch-sizes", "1", "2",
                "--ablation-batch-sizes", "--load-concurrency", "--repeats", "3", "--min-clips", "4",
                "--quiet"]  # fmt: skip
VERDICT_REHEARSAL = "results/rehearsal/cpu_verdict"


@nox.session(python=False)
def verdict_rehearsal(session):
    """The verdict stage measured as two leases of a GPU host would, at tiny scale on the CPU:
    lease 1 into a fresh folder with an empty compile cache, lease 2 into another fresh folder
    (a new machine) carrying only lease 1's archive of the cache (bench.lab.carried_cache).
    Each call's minutes table (minutes.md: compile, capture, warm-up, timed passes, ...) is
    copied to OUT/lease-N/ (default results/rehearsal/cpu_verdict; the run folders stay in the
    session's tmp), with OUT/README.md: points, minutes and points per minute of each lease.
    About 4 minutes on 2 cores: nox -s verdict_rehearsal -- [OUT]"""
    import csv
    import subprocess

    out = session.posargs[0] if session.posargs else VERDICT_REHEARSAL
    root, python = _fresh_tmp(session, "verdict"), _shared(session)
    rows = []
    for lease in (1, 2):
        folder, cache = os.path.join(root, f"lease-{lease}"), os.path.join(root, f"cache-{lease}", "inductor")
        os.makedirs(os.path.dirname(cache))
        if lease == 2:  # a new machine: nothing of lease 1 but its archive
            shutil.copy(os.path.join(root, "cache-1", "inductor.tar.xz"), cache + ".tar.xz")
        command = [python, "-m", "bench.reference", "--out", folder, *VERDICT_PLAN, "--compile-cache", cache]
        done = subprocess.run(command, env={**os.environ, **OFFLINE}, capture_output=True, text=True)
        said = [line for line in done.stdout.splitlines()
                if line.startswith(("Where the minutes", "compile cache: ")) and "Inductor's" not in line]  # fmt: skip
        session.log(f"lease {lease}: exit {done.returncode}; " + " ".join(said))
        if done.returncode != 0:
            session.error(done.stdout[-2000:] + done.stderr[-2000:])
        kept = os.path.join(out, f"lease-{lease}")
        os.makedirs(kept, exist_ok=True)
        for name in ("minutes.md", "minutes.csv", "commands.txt", "device.json"):
            shutil.copy(os.path.join(folder, name), kept)
        with open(os.path.join(folder, "minutes.csv")) as table:
            call = list(csv.DictReader(table))[-1]
        minutes = sum(float(v) for k, v in call.items() if k not in ("call (UTC)", "points")) / 60
        points, compiled, timed = int(call["points"]), float(call["compile"]) / 60, float(call["timed passes"]) / 60
        rows.append(f"| {lease} | {points} | {minutes:.2f} | {points / minutes:.1f} | {compiled:.2f} | "
                    f"{100 * timed / minutes:.0f}% |")  # fmt: skip
    lines = ["# The verdict stage at tiny scale on the CPU, as two leases", "",
             f"`nox -s verdict_rehearsal` (bench.reference {' '.join(VERDICT_PLAN)}): lease 1 with an empty compile "
             "cache, lease 2 on a fresh folder carrying only lease 1's archive of it. Each lease's minutes table is "
             "in lease-N/minutes.md.", "",
             "| lease | points | minutes | points per minute | compile, minutes | timed share |",
             "|---|---|---|---|---|---|", *rows]  # fmt: skip
    Path(out, "README.md").write_text("\n".join(lines) + "\n")
    session.log("\n".join(lines))


# Both fast paths where the verdict is decided, against their limits (issue 48): profiled, with
# the ceilings and rooflines bench.reference measures after its runs.
LIMIT_PLAN = ["--engines", "voxtral_patched", "whisper_patched", "--datasets", "synthetic", "--ablation-batch-sizes",
              "--load-concurrency", "--quiet"]  # fmt: skip


@nox.session(python=False)
def gpu_limit(session):
    """Both fast paths at batch 1 and 32 on the synthetic 30 s clips, each profiled, with both
    models' ceilings and rooflines, into one reference folder whose verdict and speed table are
    ready to commit: nox -s gpu_limit -- OUT [more bench.reference options, e.g. --compile-cache
    DIR]. On a machine without CUDA the same at tiny scale, batch 1 and 2 (CI runs it so). Fails
    unless every run has its profile and every row its step / ceiling and step / roofline."""
    import csv
    import subprocess

    python = _shared(session)
    out = session.posargs[0] if session.posargs else os.path.join(_fresh_tmp(session, "gpu_limit"), "reference")
    probe = [python, "-c", "import torch; print(torch.cuda.is_available())"]
    cuda = subprocess.run(probe, capture_output=True, text=True, check=True).stdout.strip() == "True"
    sizes = ["--batch-sizes", "1", "32"] if cuda else ["--scale", "tiny", "--device", "cpu", "--batch-sizes", "1",
                                                      "2", "--min-clips", "2", "--repeats", "3"]  # fmt: skip
    _run(session, "-m", "bench.reference", "--out", out, *LIMIT_PLAN, *sizes, *session.posargs[1:], env=OFFLINE)
    with open(os.path.join(out, "speed.csv")) as table:
        speed = list(csv.DictReader(table))
    limits = ("step / ceiling", "step / roofline")
    missing = [f"{row['engine']} b{row['batch']}" for row in speed if not all(row[limit] for limit in limits)]
    profiles = list(Path(out).glob("runs/synthetic/*/profile.md"))
    if missing or len(profiles) != len(speed):
        session.error(f"{out}: rows without a limit {missing}; {len(profiles)} profiles for {len(speed)} runs")
    session.log(f"{out}/README.md: the verdict and the speed table against both limits")


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
# gate checks. About 35 s on a 2-core CPU with a warm compile cache.
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
# The code the CI gate holds a change to: its smoke run is measured again on the runner, beside
# the change's, because the speed-up is the runner's as much as the code's (two 2-core AMD EPYC
# machines gave 1.72 and 1.39-1.46 for the same code: docs/gate.md). Move it, in the same commit, after a
# change that moves the speed-up on purpose.
GATE_REFERENCE = "b0de496d9b56536c34521e591eea3a6176455c01"
CI_POWER = "results/baselines/ci_cpu_tiny_power.md"  # nox -s gate_power: what the CI gate catches


def _smoke(session, *names: str, source: str | None = None) -> list[str]:
    """One fresh smoke run per name, in the session's tmp folder; their run folders. With
    `source`, the bench of that tree runs, in the same environment: run from that folder, which
    `python -m` puts first on the path (before the editable install of this one)."""
    run_dirs = [os.path.abspath(_fresh_tmp(session, name)) for name in names]
    for run_dir in run_dirs:
        _run(session, "-m", "bench", *SMOKE_RUN, *session.posargs, f"hydra.run.dir={run_dir}", env=OFFLINE,
             cwd=source)  # fmt: skip
    return run_dirs


def _reference_tree(session) -> str:
    """GATE_REFERENCE's files in the session's tmp folder (git archive: needs a full clone)."""
    if subprocess.run(["git", "cat-file", "-e", f"{GATE_REFERENCE}^{{commit}}"], capture_output=True).returncode:
        session.error(f"the gate's reference commit {GATE_REFERENCE[:10]} is not in this clone: clone bench "
                      "whole (not --depth), or `git fetch --unshallow`")  # fmt: skip
    tree = _fresh_tmp(session, "reference")
    os.makedirs(tree)
    archive = subprocess.run(["git", "archive", GATE_REFERENCE], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
    return os.path.abspath(tree)


@nox.session(python=False)
def gate(session):
    """CI smoke gate: the same-run patched/stock speed-up of this tree against GATE_REFERENCE's,
    both measured here, one smoke run each (nox -s gate, about a minute with a warm compile cache)."""
    (reference,) = _smoke(session, "smoke-reference", source=_reference_tree(session))
    baseline = os.path.join(session.create_tmp(), "reference.json")
    _run(session, "-m", "bench.gate", "--write-baseline", reference, "--out", baseline)
    (run_dir,) = _smoke(session, "smoke")
    _run(session, "-m", "bench.gate", "--baseline", baseline, "--ratios-only", "--candidate", run_dir)


@nox.session(python=False)
def gate_power(session):
    """The smallest slowdown the CI gate catches in 95% of comparisons on this machine, measured:
    fresh smoke runs of this tree (BENCH_POWER_RUNS, default 12), every ordered pair gated one
    against the other as the gate compares the reference with a change, with every slowdown of
    bench.gate_power injected into voxtral_patched (about 7 min on 2 cores)."""
    runs = _smoke(session, *(f"smoke-power-{i}" for i in range(int(os.environ.get("BENCH_POWER_RUNS", "12")))))
    out = ["--out", CI_POWER] if not session.posargs else []  # the committed table is of the plain smoke run
    _run(session, "-m", "bench.gate_power", "--pairs", "--ratios-only", *out, *runs)


# bench.report --html on committed runs, each page opened in headless Chromium (report_browser)
H200_RUNS = "results/reference/h200/runs/synthetic"
BROWSER_REPORTS = {
    # the H200 grid at batch 1 and 32 (4 and 64 clips: --allow-mixed), priced at an example rate
    "h200": [*(f"{H200_RUNS}/{engine}_b*" for engine in ("voxtral_stock", "voxtral_patched", "voxtral_compile",
                                                         "whisper_large_v3")),
             "--allow-mixed", "--gpu-hourly-price", "3.50"],
    "cpu-real-weights": ["results/real_weights/cpu/run"],  # real WERs: the Pareto plot
}  # fmt: skip


@nox.session(python=False)
def docs(session):
    """docs/ as a site (MkDocs, Material theme; mkdocs.yml) built with --strict: a broken link
    or anchor, or a page the nav leaves out, fails the build (a few seconds)."""
    site = _fresh_tmp(session, "site")
    _run(session, "-m", "mkdocs", "build", "--strict", "--site-dir", site, env={"NO_MKDOCS_2_WARNING": "1"})


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


@nox.session(python=False)
def report_browser(session):
    """Each page bench.report --html writes for committed runs, rendered in headless Chromium
    (Debian's chromium package; BENCH_CHROMIUM names another): fails on a console error, a
    failed request, a table without rows or an image that does not decode (about 1 min).
    `nox -s report_browser -- --docs` also writes the screenshots under docs/report/."""
    _ensure_chromium(session)
    docs = "--docs" in session.posargs
    for name, args in BROWSER_REPORTS.items():
        out = _fresh_tmp(session, f"report-{name}")
        _run(session, "-m", "bench.report", *args, "--out", out, "--html", env=OFFLINE, silent=True)
        shots = ["--screenshots", os.path.join("docs", "report", name)] if docs else []
        _run(session, "-m", "bench.lab.html_check", os.path.join(out, "report.html"), *shots)
