"""The compile cache as one archive a lease carries to the next (bench.lab.carried_cache):
what a call compiled is read back by the next on a new machine, and the archive stays within
the space the wheels leave, the oldest entries left out first."""

import os
import time

import torch

from bench.engines._fast.compiled_generate import inductor_cache_counts, inductor_cache_report
from bench.lab import carried_cache
from bench.lab.grid import use_compile_cache


def _entry(cache, name: str, size: int, age_s: float) -> None:
    """A folder of the cache holding one file of incompressible bytes, last written age_s ago."""
    folder = cache / name
    folder.mkdir(parents=True)
    path = folder / "kernel.bin"
    path.write_bytes(os.urandom(size))
    when = time.time() - age_s
    os.utime(path, (when, when))


def test_an_archive_read_back_gives_every_file_again(tmp_path):
    cache = tmp_path / "inductor"
    _entry(cache, "fxgraph/ab", 3000, 10)
    (cache / "fxgraph" / "ab" / "entry.py").write_text("print('a generated kernel')\n" * 200)
    _entry(cache, "triton/cd", 2000, 20)
    line = carried_cache.write(cache, limit_mib=1.0)
    assert "2 of 2 entries" in line and "left out" not in line
    moved = tmp_path / "next-lease" / "inductor"
    moved.parent.mkdir()
    carried_cache.archive_of(cache).rename(carried_cache.archive_of(moved))
    assert carried_cache.read_back(moved).startswith("compile cache: read back 3 file(s)")
    for path in cache.rglob("*"):
        if path.is_file():
            assert (moved / path.relative_to(cache)).read_bytes() == path.read_bytes(), path
    assert carried_cache.read_back(tmp_path / "none") is None  # no archive: nothing read


def test_over_the_space_the_oldest_entries_are_left_out(tmp_path):
    cache = tmp_path / "inductor"
    for k, age in enumerate([50, 10, 40, 20, 30]):  # 300 KiB each, incompressible
        _entry(cache, f"e{k}", 300 * 1024, age)
    line = carried_cache.write(cache, limit_mib=1.0)  # room for 3 of them
    assert "3 of 5 entries" in line and "2 oldest left out to fit" in line
    archive = carried_cache.archive_of(cache)
    assert archive.stat().st_size <= 2**20
    import tarfile

    with tarfile.open(archive) as tar:
        kept = sorted({name.split("/")[0] for name in tar.getnames()})
    assert kept == ["e1", "e3", "e4"]  # the newest three (10, 20, 30 s old)


def test_a_graph_compiled_by_one_lease_is_read_back_by_the_next(tmp_path, monkeypatch):
    """Through the archive alone: the cache folder of the first call is gone, as on a new machine."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "before"))  # put back after the test

    def step(x):
        return torch.nn.functional.silu(x @ x.T) * 3

    x = torch.randn(4, 4)
    first = tmp_path / "lease-1" / "inductor"
    with carried_cache.carried(first) as spent:
        use_compile_cache(first)
        torch._dynamo.reset()
        at_load = inductor_cache_counts()
        torch.compile(step)(x)
        assert inductor_cache_report(at_load)["inductor_graphs_built"] == 1
    assert spent[0] > 0 and carried_cache.archive_of(first).is_file()
    second = tmp_path / "lease-2" / "inductor"
    second.parent.mkdir()
    carried_cache.archive_of(first).rename(carried_cache.archive_of(second))
    import shutil

    shutil.rmtree(first)
    with carried_cache.carried(second):
        use_compile_cache(second)
        torch._dynamo.reset()
        at_load = inductor_cache_counts()
        torch.compile(step)(x)
        assert inductor_cache_report(at_load) == {"inductor_graphs_read_from_cache": 1, "inductor_graphs_built": 0}
    torch._dynamo.reset()
