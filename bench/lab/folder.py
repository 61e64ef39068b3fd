"""A results folder's own files, beside its run folders.

- commands.txt: every command that measured into the folder, one per line in the order they
  ran (lines starting with # are comments): a folder is often filled by several calls, on
  several leases;
- device.json: the hardware, its measured copy bandwidth and the check of its energy counter,
  once per folder.
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import torch

DEVICE_FILE = "device.json"
COMMANDS_FILE = "commands.txt"
LEGACY_COMMAND_FILE = "command.txt"  # folders of earlier versions kept only the last command


def measured_as(folder: Path) -> Path:
    """A run's folder: as its label is spelt now, or, where only that exists, as it was spelt
    before an engine's rename (a folder measured then is continued, not measured again)."""
    from bench.engines import former_spelling

    former = folder.with_name(former_spelling(folder.name))
    return former if not folder.exists() and former.exists() else folder


# options that change how long a grid's calls take, not which runs they measure or a figure
# they record: the time budget, and the compile cache (each run's table row says what it gave)
CALL_OPTIONS = ("--budget-minutes", "--compile-cache")


def without_budget(argv: list[str]) -> list[str]:
    """The command line less CALL_OPTIONS and their values."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in CALL_OPTIONS:
            skip = True
        elif not arg.startswith(tuple(f"{option}=" for option in CALL_OPTIONS)):
            kept.append(arg)
    return kept


def record_command(out: Path, module: str, argv: list[str]) -> None:
    """Append this call to out/commands.txt, unless it repeats the last line (a call again after
    the time budget ran out is the same measurement, continued)."""
    line = f"python -m {module} {shlex.join(without_budget(argv))}".rstrip()
    lines = recorded_commands(out)
    if lines and lines[-1] == line:
        return
    with open(out / COMMANDS_FILE, "a") as f:
        f.write(line + "\n")


def recorded_commands(out: Path, comments: bool = False) -> list[str]:
    """The folder's commands in order (with its comment lines when asked)."""
    path = out / COMMANDS_FILE
    if not path.exists():
        path = out / LEGACY_COMMAND_FILE
    if not path.exists():
        return []
    lines = [line.rstrip() for line in path.read_text().splitlines() if line.strip()]
    return lines if comments else [line for line in lines if not line.lstrip().startswith("#")]


def not_measured_lines(missing: list[tuple], planned: int, again: int = 0) -> list[str]:
    """A README's list of planned runs with no finished run, each (what it is, its folder[, why
    it is not done]), with why: the last line of its error.txt, else the why given, else that
    it was not run yet. `again` of them have a run in the tables, to be measured again."""
    if not missing:
        return []
    kept = f", {again} of them in the tables from a run to be measured again (why, below)" if again else ""
    head = f"Not measured (yet): {len(missing)} of the {planned} planned runs{kept}; tables leave out those not run."
    lines = [head, ""]
    for what, folder, *given in missing:
        error = folder / "error.txt"
        why = error.read_text().strip().splitlines()[-1] if error.exists() else (given or ["not run yet"])[0]
        lines.append(f"- {what}: {why}")
    return [*lines, ""]


def copy_bandwidth(device: torch.device, n_bytes: int = 1 << 30, repeats: int = 10) -> float:
    """Bytes per second moved by a large same-device copy (bytes read + bytes written)."""
    if device.type != "cuda":
        n_bytes = min(n_bytes, 256 << 20)
    src = torch.empty(n_bytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        dst.copy_(src)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    return 2 * n_bytes * repeats / seconds


def device_record(out: Path, device: torch.device) -> dict:
    """The hardware, its copy bandwidth and whether its energy counter advances, measured once
    per folder (kept when resuming)."""
    from bench.host.energy import counter_check
    from bench.host.environment import environment

    path = out / DEVICE_FILE
    if path.exists():
        record = json.loads(path.read_text())
        if "energy_counter" in record:
            return record
    else:
        record = {"hardware": environment(device)["hardware"], "copy_bandwidth_bytes_per_s": copy_bandwidth(device)}
    # NVML's counter moves when the GPU works (or why there is none); a folder begun before this
    # check was kept gets it on its next call
    record["energy_counter"] = counter_check(device)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return record
