"""Wheels for a GPU host without network: python -m bench.wheelhouse --out .whl

A lent GPU machine has PyTorch, transformers, pandas and much else, but not all of
bench's dependencies, and it cannot reach a registry. This walks bench's dependency tree
as installed here (so the host gets the versions CI tested), drops what the host already
has where its version meets what asks for it (missing_packages: transformers is carried
whatever the host has, since bench's Voxtral engines use its internals, and so is a host
package whose version fails a requirement, with what the newer one needs), and fetches a
wheel of each remaining package for the host's Python and platform.
Source-only packages (openai-whisper, antlr4-python3-runtime) are built into wheels here;
both are pure Python, so a wheel built here runs there.

On the host (no network, no build):

    python3 -m pip install --no-index --no-deps --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from bench.host.environment import write_source_stamp

# What the lent H100/H200 image ('cuda') already holds, as its page listed it on
# 2026-11-17 (/work/.library/device/KINDS.md there); override with --have for another host
# (the names of `python3 -m pip freeze` run on it).
GPU_IMAGE_PACKAGES = """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-
pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock
flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx
huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-
cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities linear-
operator lineax llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py
mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda
numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-
cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py nvidia-
nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript opencv-python-
headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft
pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout
pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-
core scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham
simplejson six sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore
threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric
torchmetrics torchvision tqdm transformers treescope triton typer typing-extensions typing-inspect urllib3
uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
""".split()  # noqa: SIM905 (a word list reads better as text)
# Versions the image's page gives for some of them (a session's `pip list` there, 2026-11):
# what `nox -s gpu_host_rehearsal` installs to stand in for the host on a CPU machine.
GPU_IMAGE_VERSIONS = {
    "torch": "2.11.0",
    "transformers": "5.17.0",
    "numpy": "2.5.2",
    "huggingface-hub": "1.33.0",
    "tokenizers": "0.23.2",
    "safetensors": "0.8.0",
    "tiktoken": "0.14.0",
    "triton": "3.6.0",
}
HOST_REQUIREMENTS = "host-requirements.txt"
# Carried even where the host has them: bench's Voxtral engines reach into transformers'
# internals (caches, placeholder merge), so the host runs the version the tests ran.
ALWAYS_CARRY = ("transformers",)
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]


def target_environment(python: str) -> dict[str, str]:
    """Marker values of the host: Linux, x86-64, CPython `python`."""
    return default_environment() | {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }


# Never carried: what an offline run never imports (each with why), so the wheels leave room
# for a compile cache in the 64 MiB one device call carries.
NEVER_CARRIED = {"hf-xet": "huggingface_hub's download accelerator: an offline run downloads nothing"}
# Kept as the host has them even where a requirement's bound fails (said, not carried): the
# host's CUDA build of torch, and what its compiled extensions were built against. On the
# 2026-12-04 lease bench ran with the image's numpy 2.5.2, outside mistral-common's <2.4.
KEPT_ON_HOST = ("torch", "numpy", "triton")


def _host_satisfies(requirement: Requirement, version: str | None, strict: bool) -> bool:
    """Whether the host's copy meets a requirement: by its version where known; where not (the
    image's list names most packages without one), only if the requirement sets no bound, when
    `strict`, else assumed (a package the host lacks was tested against the image's copies)."""
    if version is not None:
        return requirement.specifier.contains(version, prereleases=True)
    return not strict or not str(requirement.specifier)


def missing_packages(
    root: str, have, python: str, always: tuple[str, ...] = (), kept: list[str] | None = None
) -> dict[str, str]:
    """{name: version installed here} for root's dependency tree, less what the host has and
    satisfies. `have`: the host's packages, {name: version or None} (a set: versions unknown).

    A package the host has is carried when its version fails a requirement (huggingface-hub
    1.33 on the image, where transformers 5.25 needs >=2.4), or when it is in `always`. Such an
    upgrade's own requirements are held strictly: a host package they bound whose version is
    unknown is carried too (the upgraded package was tested with the copies here, not with
    the image's). NEVER_CARRIED is left out, with what only it requires; KEPT_ON_HOST stays the
    host's, each failed bound said in `kept`."""
    have = dict.fromkeys(have) if not isinstance(have, dict) else have
    always = {canonicalize_name(name) for name in always}
    environment = target_environment(python)
    found: dict[str, str] = {}
    todo = [(Requirement(r), "", False) for r in distribution(root).requires or []]
    while todo:
        requirement, extra, strict = todo.pop()
        if requirement.marker and not requirement.marker.evaluate(environment | {"extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        if name in NEVER_CARRIED:
            continue
        upgrade = name in always or (name in have and not _host_satisfies(requirement, have[name], strict))
        if upgrade and name in KEPT_ON_HOST:
            if kept is not None and have.get(name):
                kept.append(f"{name} {have[name]} on the host fails {requirement}: kept (KEPT_ON_HOST)")
            continue
        if name in have and not upgrade:
            continue
        try:
            dist = distribution(name)
        except PackageNotFoundError as err:
            raise SystemExit(f"bench.wheelhouse: {name} is not installed here: pip install -e . first") from err
        extras = sorted(requirement.extras)
        if name not in found:
            found[name] = dist.version
            extras = ["", *extras]
        # a package's base requirements once, then those of each extra asked for
        todo += [(Requirement(r), e, strict or upgrade) for r in dist.requires or [] for e in extras]
    return dict(sorted(found.items()))


def host_packages(freeze: Path | None) -> dict[str, str | None]:
    """The host's packages with their versions where known: a `pip freeze` of it, else the lent
    GPU image's list with the versions its page gives."""
    if freeze is None:
        return dict.fromkeys(canonicalize_name(n) for n in GPU_IMAGE_PACKAGES) | {
            canonicalize_name(n): v for n, v in GPU_IMAGE_VERSIONS.items()
        }
    packages = {}
    for line in filter(None, (line.strip() for line in freeze.read_text().splitlines())):
        name, _, version = line.partition("==")
        packages[canonicalize_name(name.split(" @ ")[0])] = version or None
    return packages


def host_requirements(root: str, have: set[str], python: str, versions: dict[str, str]) -> list[str]:
    """What of root's dependency tree the host provides itself, pinned where its version is
    known: a CPU machine that installs these stands in for the host in a rehearsal."""
    # torch's own requirements depend on the build installed here (a CUDA build's list
    # nvidia-* wheels, the CPU build's none): the stand-in's pinned torch brings its own
    tree = sorted([*missing_packages(root, {"torch"}, python), "torch"])
    return [f"{name}=={versions[name]}" if name in versions else name for name in tree if name in have]


def fetch(name: str, version: str, out: Path, python: str) -> None:
    """A wheel of name==version for the host: a built one from the registry, else built here."""
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    download = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(out)]
    target = ["--python-version", python, "--implementation", "cp", *platforms, f"{name}=={version}"]
    if subprocess.run([*download, *target], capture_output=True).returncode == 0:
        return
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), f"{name}=={version}"]
    subprocess.run(build, check=True)


# What one device call carries beside the checkout (the device tool's limit), and the modules a
# GPU plan imports: bench.reference and its engines' libraries, bench.serve and bench.load for
# the load table, NVML for the energy counter.
CARRY_LIMIT_MIB = 64
PLAN_MODULES = (
    "bench.lab.reference", "bench.lab.speed", "bench.lab.agreement", "bench.online.server", "bench.online.load",
    "bench.host.energy", "pynvml", "prometheus_client", "fastapi", "uvicorn", "httpx", "whisper", "jiwer",
    "mistral_common", "hydra", "soundfile",
)  # fmt: skip


def wheels_mib(out: Path) -> float:
    """The size of the wheels in out, in MiB."""
    return sum(p.stat().st_size for p in out.glob("*.whl")) / 2**20


def check(out: Path) -> list[str]:
    """What keeps the wheelhouse from serving a GPU plan: a module the plan imports that does
    not import (run with the wheelhouse on the path, on the host or its stand-in), or a folder
    over what one call carries."""
    import importlib

    problems = []
    for module in PLAN_MODULES:
        try:
            importlib.import_module(module)
        except Exception as err:  # noqa: BLE001 - any failure to import is what this reports
            problems.append(f"{module} does not import: {type(err).__name__}: {err}")
    size = wheels_mib(out)
    if size > CARRY_LIMIT_MIB:
        problems.append(f"{out} holds {size:.1f} MiB of wheels: over the {CARRY_LIMIT_MIB} MiB one call carries")
    return problems


def main(argv: list[str] | None = None) -> int | None:
    parser = argparse.ArgumentParser(prog="python -m bench.wheelhouse", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(".whl"))
    parser.add_argument("--python", default="3.12", help="the host's Python (major.minor)")
    parser.add_argument("--have", type=Path, help="a `pip freeze` of the host (default: the lent GPU image)")
    parser.add_argument(
        "--check", action="store_true", help="build nothing: check that every module a GPU plan imports imports, "
        f"and that --out holds at most {CARRY_LIMIT_MIB} MiB (nox -s gpu_host_rehearsal runs it)"
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.check:
        problems = check(args.out)
        print("\n".join(f"bench.wheelhouse: {p}" for p in problems) or f"{len(PLAN_MODULES)} plan modules import")
        return 1 if problems else 0
    have = host_packages(args.have)
    args.out.mkdir(parents=True, exist_ok=True)
    # the copied tree has no .git: runs there read the commit from this stamp (bench.host.environment)
    stamp = write_source_stamp(args.out / "source.json")
    print(f"source: {stamp['git_commit'] if stamp else 'not a git checkout: runs there will name no commit'}")
    host = host_requirements("bench", set(have), args.python, {} if args.have else GPU_IMAGE_VERSIONS)
    (args.out / HOST_REQUIREMENTS).write_text("\n".join(host) + "\n")
    kept: list[str] = []
    packages = missing_packages("bench", have, args.python, ALWAYS_CARRY, kept)
    for line in sorted(set(kept)):
        print(f"bench.wheelhouse: {line}")
    for name, version in packages.items():
        print(f"{name}=={version}")
        fetch(name, version, args.out, args.python)
    size = wheels_mib(args.out)
    print(f"{len(packages)} packages -> {args.out} ({size:.1f} MiB); what the host has: {args.out / HOST_REQUIREMENTS}")
    print(
        f"left out (never imported offline): {', '.join(NEVER_CARRIED)}; {CARRY_LIMIT_MIB - size:.1f} MiB of the "
        f"{CARRY_LIMIT_MIB} MiB one device call carries left for a compile cache"
    )
    if size > CARRY_LIMIT_MIB:
        print(f"bench.wheelhouse: over the {CARRY_LIMIT_MIB} MiB one device call carries", file=sys.stderr)
        return 1
    return 0
