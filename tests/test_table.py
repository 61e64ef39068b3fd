"""Cells as people read them, and patches a host leaves inert shown as such."""

import pandas as pd
import pytest

from bench.analysis.table import markdown, readable
from bench.pipeline.cells import patches_cell, table_row
from bench.pipeline.record import DatasetRecord, Summary


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        (1100.3, "1,100"),  # tok/s: no 1.1e+03
        (1234567.8, "1,234,568"),
        (999.7, "1,000"),  # rounds up into the thousands: a separator, not "1000"
        (31.53, "31.5"),
        (5.0, "5.00"),  # three significant digits, always
        (0.2812, "0.281"),
        (-0.05, "-0.0500"),
        (0.0, "0"),
        (123456, "123,456"),
        (12, "12"),
        (1e-7, "1.00e-07"),  # too small for a fixed form
        (float("nan"), "n/a"),
        (None, "n/a"),
        ("[1.00, 2.00]", "[1.00, 2.00]"),
    ],
)
def test_readable_cells(value, cell):
    assert readable(value) == cell


def test_markdown_uses_readable_cells():
    text = markdown(pd.DataFrame({"engine": ["a"], "tok/s": [1100.3], "n": [2048]}))
    assert text.splitlines()[2] == "| a | 1,100 | 2,048 |"


def _summary(patches, report, engine_patches=None):
    return Summary(
        engine="voxtral_patched", model="m", weights="random", scale="tiny", dtype="float32", batch_size=1,
        dataset=DatasetRecord(name="synthetic"), patches=patches, engine_report=report, engine_patches=engine_patches,
    )  # fmt: skip


def test_patches_the_engine_did_not_apply_are_marked_inert():
    cpu = _summary(["static_cache", "compiled_step", "cuda_graph"], {"cuda_graph_active": False,
                                                                      "compiled_step_active": True})  # fmt: skip
    assert patches_cell(cpu) == "static_cache, compiled_step, cuda_graph (inert)"
    assert table_row(cpu)["patches"] == patches_cell(cpu)
    gpu = _summary(["static_cache", "cuda_graph"], {"cuda_graph_active": True})
    assert patches_cell(gpu) == "static_cache, cuda_graph"
    assert patches_cell(_summary([], {})) == "-"


EVERY = ["device_features", "static_cache", "compiled_step", "cuda_graph", "sync_free_loop"]


def test_a_run_that_recorded_the_engines_patches_shows_all_or_all_but():
    assert patches_cell(_summary(EVERY, {}, EVERY)) == "all"
    without = [p for p in EVERY if p != "sync_free_loop"]
    assert patches_cell(_summary(without, {}, EVERY)) == "all but sync_free_loop"
    on_a_cpu = _summary(without, {"cuda_graph_active": False}, EVERY)
    assert patches_cell(on_a_cpu) == "all but sync_free_loop (cuda_graph inert)"
    two = ["static_cache", "cuda_graph"]  # fewer on than off: the names of those on
    assert patches_cell(_summary(two, {"cuda_graph_active": False}, EVERY)) == "static_cache, cuda_graph (inert)"
    # a run from before the engine's list was recorded: its names, since "all" cannot be known
    assert patches_cell(_summary(EVERY, {})) == ", ".join(EVERY)
