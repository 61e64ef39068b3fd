"""The fingerprint every result row carries: hardware, software, commit, time, host."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import socket
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import torch

from bench.config import REPO_DIR


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _run(*cmd: str) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, cwd=REPO_DIR)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def bench_version() -> str:
    """bench's version: that of the code running, bench.__version__. Not the installed
    distribution's: an editable install keeps the metadata of the day it was installed, so it
    said 0.1.0 for a tree at 0.2.0; a wheel's metadata and its bench.__version__ agree anyway."""
    import bench

    return bench.__version__


# Where a tree copied without .git (the wheelhouse route to an offline GPU host) finds the
# commit it was copied from: bench.wheelhouse writes it beside the wheels it carries (another
# --out than .whl: point BENCH_SOURCE_STAMP at its source.json)
SOURCE_STAMP = REPO_DIR / ".whl" / "source.json"


def bench_commit() -> tuple[str | None, bool | None]:
    """(commit, dirty) of bench's own repository; else, in a copied tree, those its source stamp
    records (source_stamp_commit); (None, None) when neither is there. A copy of bench inside
    another project's checkout would otherwise record that project's commit as bench's."""
    top = _run("git", "rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != REPO_DIR.resolve():
        return source_stamp_commit(Path(os.environ.get("BENCH_SOURCE_STAMP", SOURCE_STAMP)))
    status = _run("git", "status", "--porcelain", "--untracked-files=no")
    return _run("git", "rev-parse", "HEAD"), (bool(status) if status is not None else None)


def source_files_digest(paths: list[str]) -> dict[str, str]:
    """sha256 of each of bench's source files named (relative to the repository; a missing one: '')."""
    digest = {}
    for name in paths:
        path = REPO_DIR / name
        digest[name] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
    return digest


def write_source_stamp(stamp: Path) -> dict | None:
    """Record, for a copy of this tree without .git, the commit it is and a digest of bench's
    tracked source files; None (nothing written) outside bench's repository."""
    top = _run("git", "rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != REPO_DIR.resolve():
        return None
    commit, dirty = bench_commit()
    files = (_run("git", "ls-files", "bench") or "").splitlines()
    record = {"git_commit": commit, "git_dirty": dirty, "files": source_files_digest(files)}
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps(record, indent=1) + "\n")
    return record


def source_stamp_commit(stamp: Path) -> tuple[str | None, bool | None]:
    """The stamped commit, dirty when the stamp was written from a dirty tree or when any source
    file it lists has changed since (a tree edited after the copy is not that commit)."""
    try:
        record = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return None, None
    changed = source_files_digest(list(record.get("files", {}))) != record.get("files", {})
    return record.get("git_commit"), bool(record.get("git_dirty")) or changed


def lease(device: torch.device) -> dict:
    """Which machine, as booted, measured the run: Linux's boot id (a new one at every boot, so
    every lease of a lent GPU has its own) and the GPU's UUID. Two runs of one lease share both;
    runs of different leases of the same GPU model can differ by more than any interval of one
    (issue 47), so a comparison across leases must say so."""
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot_id = None
    gpu_uuid = None
    if device.type == "cuda":
        gpu_uuid = str(getattr(torch.cuda.get_device_properties(device), "uuid", "")) or None
    return {"boot_id": boot_id, "gpu_uuid": gpu_uuid}


def lease_label(environment: dict) -> str | None:
    """A run's lease in a few characters (boot id, and GPU where there is one); None when the
    run recorded none (runs from before bench 0.3.0)."""
    found = environment.get("lease") or {}
    if not found.get("boot_id"):
        return None
    gpu = found.get("gpu_uuid")
    return found["boot_id"][:8] + (f"/{gpu.removeprefix('GPU-')[:8]}" if gpu else "")


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict:
    gpu = device.type == "cuda"
    gpu_name = torch.cuda.get_device_name(device) if gpu else None
    gpu_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    driver = _run("nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader") if gpu else None
    commit, dirty = bench_commit()
    return {
        # hardware: what the CI gate compares; runs on different hardware are not comparable
        "hardware": f"{gpu_name} x{gpu_count}" if gpu else f"cpu: {_cpu_name()} x{os.cpu_count()}",
        "device": str(device),
        "gpu_name": gpu_name,
        "gpu_count": gpu_count,
        "driver": driver.splitlines()[0] if driver else None,
        "cuda": torch.version.cuda,
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": _version("transformers"),
        "whisper": _version("openai-whisper"),
        "datasets": _version("datasets"),
        "mistral_common": _version("mistral_common"),
        "faster-whisper": _version("faster-whisper"),  # null without the real-weights extra
        "ctranslate2": _version("ctranslate2"),
        "bench": bench_version(),
        "git_commit": commit,  # bench's own, or null (see bench_commit)
        "git_dirty": dirty,
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "lease": lease(device),
    }
