"""Inductor's compile cache as one archive a lease carries to the next, in what the wheels leave.

A lent GPU host is a new machine every lease, and one device call carries at most 64 MiB
beside the checkout, the wheels included (bench.lab.wheelhouse.CARRY_LIMIT_MIB). The cache
folder itself (generated code, compiled kernels and their intermediate files) outgrew what
the wheels leave after a few points on the H200; compressed, most of it is text. So a grid
command given `--compile-cache DIR` reads `DIR.tar.xz` back into DIR before it compiles
anything, and writes the archive again at the end of the call, within the space the wheels
in `.whl/` leave (or the whole limit without them).

Past that space, what goes is whole entries (each folder that holds files: one kernel's
files, one graph's entry), the oldest first: a missing entry is a miss that compiles again,
never a wrong read, while a part of one would be neither. What the last calls compiled is
kept, as the next call most likely needs it. The archive's line says how much was left out.
"""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import accumulate
from pathlib import Path

SUFFIX = ".tar.xz"


def archive_of(cache: Path) -> Path:
    return cache.with_name(cache.name + SUFFIX)


def space_mib(wheels: Path = Path(".whl")) -> float:
    """What one device call can carry for the archive: the limit, less the wheels beside it."""
    from bench.lab.wheelhouse import CARRY_LIMIT_MIB, wheels_mib

    return CARRY_LIMIT_MIB - (wheels_mib(wheels) if wheels.is_dir() else 0.0)


def read_back(cache: Path) -> str | None:
    """Unpack DIR.tar.xz into DIR (what an earlier lease compiled), before anything compiles;
    a line saying so, or None without an archive. Entries already in DIR are kept."""
    archive = archive_of(cache)
    if not archive.is_file():
        return None
    cache.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:xz") as tar:
        members = tar.getmembers()
        tar.extractall(cache, filter="data")  # no path outside the cache, no links out of it
    mib = archive.stat().st_size / 2**20
    return f"compile cache: read back {len(members)} file(s) from {archive} ({mib:.1f} MiB)"


def _entries(cache: Path) -> list[tuple[float, list[Path]]]:
    """Every folder of the cache that holds files, with its files and its newest file's time."""
    entries = []
    for folder in sorted({p.parent for p in cache.rglob("*") if p.is_file()}):
        files = sorted(p for p in folder.iterdir() if p.is_file())
        entries.append((max(p.stat().st_mtime for p in files), files))
    return entries


def _compressed(cache: Path, files: list[Path]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:xz", preset=6) as tar:
        for path in files:
            tar.add(path, arcname=str(path.relative_to(cache)))
    return buffer.getvalue()


def write(cache: Path, limit_mib: float) -> str:
    """Archive the cache into DIR.tar.xz within limit_mib: every entry if it fits, else the
    newest entries that do (each compressed alone to size it, then together); the line says
    what the archive holds and what was left out."""
    entries = sorted(_entries(cache), key=lambda entry: entry[0], reverse=True)  # newest first
    limit = limit_mib * 2**20
    everything = [p for _, files in entries for p in files]
    data = _compressed(cache, everything)
    kept, left = len(entries), 0
    if len(data) > limit:
        sizes = [len(_compressed(cache, files)) for _, files in entries]
        kept = sum(1 for total in accumulate(sizes) if total <= limit)  # the newest that fit, apart
        data = _compressed(cache, [p for _, files in entries[:kept] for p in files])
        while len(data) > limit and kept:  # together larger than apart (rare): one fewer
            kept -= 1
            data = _compressed(cache, [p for _, files in entries[:kept] for p in files])
        left = len(entries) - kept
    archive = archive_of(cache)
    archive.write_bytes(data)
    raw = sum(p.stat().st_size for p in everything) / 2**20
    out = f", {left} oldest left out to fit" if left else ""
    return (
        f"compile cache: {archive}, {kept} of {len(entries)} entries ({raw:.1f} MiB in the folder) in "
        f"{len(data) / 2**20:.1f} MiB of the {limit_mib:.1f} MiB a call carries beside the wheels{out}"
    )


@contextmanager
def carried(cache: Path | None) -> Iterator[list[float]]:
    """Around a grid command's measuring: DIR.tar.xz read back into DIR first, the archive
    written again last (also when the budget or an error ends the call), each with its line.
    Yields a one-item list that holds, after the block, the seconds both took (a call's minutes
    table counts them). Nothing with no cache given."""
    spent = [0.0]
    if cache is None:
        yield spent
        return
    began = time.perf_counter()
    line = read_back(cache)
    if line:
        print(line, flush=True)
    spent[0] += time.perf_counter() - began
    try:
        yield spent
    finally:
        began = time.perf_counter()
        if cache.is_dir():
            print(write(cache, space_mib()), flush=True)
        spent[0] += time.perf_counter() - began
