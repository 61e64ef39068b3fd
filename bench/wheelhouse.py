"""Wheels for a GPU host without network: python -m bench.wheelhouse --out .whl

A lent GPU machine has PyTorch, transformers, pandas and much else, but not all of
bench's dependencies, and it cannot reach a registry. This walks bench's dependency tree
as installed here (so the host gets the versions CI tested), drops what the host already
has, and fetches a wheel of each remaining package for the host's Python and platform.
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

# What the lent H100/H200 image ('cuda') already holds, as its page listed it on
# 2026-11-17 (/work/.library/device/KINDS.md there); override with --have for another host
# (the names of `python3 -m pip freeze` run on it).
GPU_IMAGE_PACKAGES = """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs certifi
charset-normalizer click cloudpickle colorama contourpy cycler filelock fonttools frozenlist fsspec
h11 hf-xet httpcore httpx huggingface-hub idna jinja2 joblib kiwisolver llvmlite markupsafe
matplotlib mpmath msgpack multidict networkx numba numpy packaging pandas pillow pip propcache
protobuf psutil pyarrow pygments pyparsing python-dateutil pyyaml regex requests rich
safetensors scipy sentencepiece setuptools six sympy tiktoken tokenizers torch tqdm transformers
triton typing-extensions urllib3 wheel xxhash yarl zipp
nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft
nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-nccl-cu13
nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx cuda-bindings cuda-pathfinder cuda-toolkit
""".split()  # noqa: SIM905 (a word list reads better as text)
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


def missing_packages(root: str, have: set[str], python: str) -> dict[str, str]:
    """{name: version installed here} for root's dependency tree, less what the host has."""
    environment = target_environment(python)
    found: dict[str, str] = {}
    todo = [(Requirement(r), "") for r in distribution(root).requires or []]
    while todo:
        requirement, extra = todo.pop()
        if requirement.marker and not requirement.marker.evaluate(environment | {"extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        if name in have:
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
        todo += [(Requirement(r), e) for r in dist.requires or [] for e in extras]
    return dict(sorted(found.items()))


def fetch(name: str, version: str, out: Path, python: str) -> None:
    """A wheel of name==version for the host: a built one from the registry, else built here."""
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    download = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(out)]
    target = ["--python-version", python, "--implementation", "cp", *platforms, f"{name}=={version}"]
    if subprocess.run([*download, *target], capture_output=True).returncode == 0:
        return
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), f"{name}=={version}"]
    subprocess.run(build, check=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.wheelhouse", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(".whl"))
    parser.add_argument("--python", default="3.12", help="the host's Python (major.minor)")
    parser.add_argument("--have", type=Path, help="a `pip freeze` of the host (default: the lent GPU image)")
    args = parser.parse_args(argv)
    have = (
        {canonicalize_name(line.split("==")[0].split(" @ ")[0]) for line in args.have.read_text().split() if line}
        if args.have
        else {canonicalize_name(n) for n in GPU_IMAGE_PACKAGES}
    )
    packages = missing_packages("bench", have, args.python)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, version in packages.items():
        print(f"{name}=={version}")
        fetch(name, version, args.out, args.python)
    size = sum(p.stat().st_size for p in args.out.glob("*.whl")) / 2**20
    print(f"{len(packages)} packages -> {args.out} ({size:.1f} MiB)")


if __name__ == "__main__":
    main()
