"""Cells as people read them, and patches a host leaves inert shown as such."""

import pandas as pd
import pytest

from bench.analysis.table import markdown, readable
from bench.pipeline.record import DatasetRecord, Summary, patches_cell, table_row


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


def _summary(patches, report):
    return Summary(
        engine="voxtral_patched", model="m", weights="random", scale="tiny", dtype="float32", batch_size=1,
        dataset=DatasetRecord(name="synthetic"), patches=patches, engine_report=report,
    )  # fmt: skip


def test_patches_the_engine_did_not_apply_are_marked_inert():
    cpu = _summary(["static_cache", "compiled_step", "cuda_graph"], {"cuda_graph_active": False,
                                                                      "compiled_step_active": True})  # fmt: skip
    assert patches_cell(cpu) == "static_cache, compiled_step, cuda_graph (inert)"
    assert table_row(cpu)["patches"] == patches_cell(cpu)
    gpu = _summary(["static_cache", "cuda_graph"], {"cuda_graph_active": True})
    assert patches_cell(gpu) == "static_cache, cuda_graph"
    assert patches_cell(_summary([], {})) == "-"
