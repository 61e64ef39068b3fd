"""Inductor's on-disk cache of compiled graphs: the folder a grid command points it at, the
compiles each run counts as built or read back, and what the speed tables say of them."""

from types import SimpleNamespace

import pytest
import torch

from bench.engines._fast.compiled_generate import inductor_cache_counts, inductor_cache_report
from bench.lab.evidence import compile_cache_cell
from bench.lab.grid import use_compile_cache


def _step(x):
    return torch.nn.functional.gelu(x @ x.T) + 1


def test_a_graph_is_built_into_the_cache_given_then_read_back_from_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "before"))  # put back after the test
    cache = tmp_path / "carried"
    assert use_compile_cache(cache) == f"compile cache: {cache}, 0 graph(s) in it (0.0 MiB)"
    x = torch.randn(4, 4)
    torch._dynamo.reset()
    at_load = inductor_cache_counts()
    torch.compile(_step)(x)
    assert inductor_cache_report(at_load) == {"inductor_graphs_read_from_cache": 0, "inductor_graphs_built": 1}
    assert not (tmp_path / "before").exists()  # it went where it was told
    assert use_compile_cache(None).startswith(f"compile cache: {cache}, 1 graph(s) in it (")
    torch._dynamo.reset()  # as between two runs (or two calls over the same folder)
    at_load = inductor_cache_counts()
    torch.compile(_step)(x)
    assert inductor_cache_report(at_load) == {"inductor_graphs_read_from_cache": 1, "inductor_graphs_built": 0}
    torch._dynamo.reset()


@pytest.mark.parametrize(
    ("report", "cell"),
    [
        ({"inductor_graphs_read_from_cache": 2, "inductor_graphs_built": 1, "inductor_cached_graphs_at_load": 0},
         "2 of 3 read"),
        ({"inductor_graphs_read_from_cache": 0, "inductor_graphs_built": 3, "inductor_cached_graphs_at_load": 9},
         "0 of 3 read"),
        ({"inductor_graphs_read_from_cache": 0, "inductor_graphs_built": 0, "inductor_cached_graphs_at_load": 9}, None),
        ({"inductor_cached_graphs_at_load": 0}, "empty"),  # a run measured before compiles were counted
        ({"inductor_cached_graphs_at_load": 4}, "held 4"),
        ({"inductor_cached_graphs_at_load": None}, None),  # compiled_step off: nothing compiled
        (None, None),
    ],
)  # fmt: skip
def test_the_compile_cache_cell_says_what_the_cache_gave_the_cold_start(report, cell):
    assert compile_cache_cell(SimpleNamespace(engine_report=report, compile_seconds=None)) == cell


def test_the_cell_gives_the_seconds_spent_compiling_where_the_run_recorded_them():
    counted = {"inductor_graphs_read_from_cache": 2, "inductor_graphs_built": 1}
    assert compile_cache_cell(SimpleNamespace(engine_report=counted, compile_seconds=41.26)) == "2 of 3 read, 41.3 s"
