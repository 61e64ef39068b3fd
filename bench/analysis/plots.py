"""The report's figures: WER against RTFx with the Pareto front, RTFx against batch size."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from bench.analysis.comparison import pareto_front


@contextmanager
def _figure(path: Path):
    """An axes to draw on; saved to `path` (PNG, with a legend) when the block ends."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a CI runner or a GPU host
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    try:
        yield ax
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)


def plot_wer_vs_rtfx(frame: pd.DataFrame, path: Path) -> bool:
    data = frame.dropna(subset=["WER", "RTFx"])
    if data.empty:
        return False
    with _figure(path) as ax:
        for engine, group in data.groupby("engine"):
            ax.scatter(group["RTFx"], 100 * group["WER"], label=engine)
        front = pareto_front(data)
        ax.plot(front["RTFx"], 100 * front["WER"], "k--", linewidth=1, label="Pareto front")
        ax.set_xlabel("RTFx (higher is faster)")
        ax.set_ylabel("WER % (lower is better)")
    return True


def plot_rtfx_vs_batch(frame: pd.DataFrame, path: Path) -> bool:
    if frame["batch"].nunique() < 2:
        return False
    with _figure(path) as ax:
        for engine, group in frame.groupby("engine"):
            group = group.sort_values("batch")
            ax.plot(group["batch"], group["RTFx"], marker="o", label=engine)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_ylabel("RTFx")
    return True
