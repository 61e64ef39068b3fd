"""Engines side by side: the comparison table, and whether runs are comparable."""

from __future__ import annotations

import pandas as pd

from bench.analysis.runs import Run
from bench.errors import BenchError
from bench.host.busy import busy_notes
from bench.pipeline.cells import energy_reasons, table_row

COMPARISON_COLUMNS = [
    "engine", "patches", "weights", "model", "dtype", "dataset", "batch", "n", "WER", "S/D/I", "RTFx", "RTFx 95% CI",
    "passes", "p50 s", "p90 s", "p99 s", "TTFT p50 s", "tok/s", "peak GiB", "cold start s", "J/audio h",
    "cost/1k audio h", "cost/1k audio h 95% CI", "compiled while timed", "host", "hardware",
]  # fmt: skip
COST_COLUMNS = ["cost/1k audio h", "cost/1k audio h 95% CI"]


def comparison_frame(runs: list[Run], hourly_price: float | None = None) -> pd.DataFrame:
    """One row per run. Cost is priced at hourly_price, else at each run's run.gpu_hourly_price;
    its columns are left out when no run has a price."""
    frame = pd.DataFrame([table_row(run.summary, hourly_price) for run in runs], columns=COMPARISON_COLUMNS)
    if frame["cost/1k audio h"].isna().all():
        frame = frame.drop(columns=COST_COLUMNS)
    if frame["TTFT p50 s"].isna().all():  # time to first text: streamed load runs only
        frame = frame.drop(columns="TTFT p50 s")
    if frame["dtype"].nunique() <= 1:  # shown when runs differ in it (faster_whisper's int8 beside float32)
        frame = frame.drop(columns="dtype")
    if frame["compiled while timed"].isna().all():  # shown only when a run's timings include compile work
        frame = frame.drop(columns="compiled while timed")
    if frame["host"].isna().all():  # shown only when a run was timed on a busy host
        frame = frame.drop(columns="host")
    return frame.sort_values(["dataset", "batch", "engine"], kind="stable").reset_index(drop=True)


def figure_notes(runs: list[Run]) -> str:
    """Why a run has no energy figure (a CPU run: no board counter), and why a load run has no
    time to first text where another has one (not streamed, or no text before the end), each
    reason once: a table's n/a always comes with its reason."""
    notes = [f"Energy (J/audio h) {note}.\n" for note in energy_reasons([r.summary for r in runs])]
    online = [(r.summary.online or {}) for r in runs]
    if any(o.get("ttft", {}).get("p50") is not None for o in online):
        reasons = {o["ttft_note"] for o in online if o.get("ttft", {}).get("p50") is None and o.get("ttft_note")}
        notes += [f"Time to first text (TTFT p50 s) n/a: {note}.\n" for note in sorted(reasons)]
    notes += [f"{note}.\n" for note in busy_notes([r.summary for r in runs])]
    return "".join(notes)


def check_comparable(runs: list[Run], allow_mixed: bool) -> None:
    hardware = sorted({r.hardware for r in runs})
    datasets = {r.dataset_key for r in runs}
    weights = sorted({r.summary.weights for r in runs})
    problems = []
    if len(weights) > 1:
        # random weights measure speed with no accuracy; pretrained ones measure both: one table
        # of both would set a speed-only run against accurate ones
        problems.append(f"weights differ ({' and '.join(weights)}: random weights have no WER)")
    if len(hardware) > 1:
        problems.append(f"hardware differs ({'; '.join(hardware)})")
    if len(datasets) > 1:
        names = sorted({f"{r.summary.dataset.name} {r.dataset_key}" for r in runs})
        problems.append(f"datasets differ ({'; '.join(names)})")
    if problems and not allow_mixed:
        raise BenchError(
            "these runs are not comparable: " + " and ".join(problems) + "; speed is comparable only on the same "
            "hardware and data, and accuracy only between runs that measured it. Report them separately, or pass "
            "--allow-mixed to put them in one table anyway"
        )


def pareto_front(frame: pd.DataFrame) -> pd.DataFrame:
    """Configurations no other beats on both WER (lower) and RTFx (higher)."""
    keep = []
    for i, row in frame.iterrows():
        dominated = (
            (frame["WER"] <= row["WER"])
            & (frame["RTFx"] >= row["RTFx"])
            & ((frame["WER"] < row["WER"]) | (frame["RTFx"] > row["RTFx"]))
        ).any()
        if not dominated:
            keep.append(i)
    return frame.loc[keep].sort_values("RTFx")
