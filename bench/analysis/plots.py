"""The report's figures, each one readable on its own: a title naming the models, dataset,
hardware and weights; axes in plain numbers; 95% interval bars on every RTFx.

draw_* return a matplotlib Figure, or the sentence saying why there is nothing to draw;
save() writes a figure and closes it. Tests read the figure objects back.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.analysis.comparison import pareto_front
from bench.analysis.runs import Run
from bench.pipeline.cells import table_row

CI_NOTE = "bars: 95% CI of RTFx"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a CI runner or a GPU host
    import matplotlib.pyplot as plt

    return plt


def plot_frame(runs: list[Run]) -> pd.DataFrame:
    """What the figures draw: a table row per run, with the RTFx interval as numbers."""
    frame = pd.DataFrame([table_row(run.summary) for run in runs])
    for column in ("WER", "RTFx", "RTFx low", "RTFx high"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def title(kind: str, frame: pd.DataFrame) -> str:
    """What a figure shows and of what: models, datasets, hardware, weights."""

    def names(column):
        return ", ".join(sorted(frame[column].astype(str).unique()))

    return f"{kind}: {names('model')} on {names('dataset')}\n{names('hardware')}; {names('weights')} weights"


def _labels(frame: pd.DataFrame) -> pd.Series:
    """A line per engine; its patches, model or dtype added where one engine ran several."""
    label = frame["engine"].astype(str)
    for column in (c for c in ("patches", "model", "dtype") if c in frame):
        several = frame.groupby("engine")[column].transform("nunique") > 1
        label = label.where(~several, label + " (" + frame[column].astype(str) + ")")
    return label


def _interval(group: pd.DataFrame):
    """Error-bar lengths below and above each RTFx (0 where a run has no interval)."""
    low = (group["RTFx"] - group["RTFx low"]).fillna(0).clip(lower=0)
    high = (group["RTFx high"] - group["RTFx"]).fillna(0).clip(lower=0)
    import numpy as np

    return np.vstack([low.to_numpy(float), high.to_numpy(float)])  # shape (2, n), as errorbar takes it


def _plain_log_axis(axis, values: pd.Series) -> None:
    """A log axis labelled in plain numbers (20, 50, 100 rather than 10^2): at 1, 2 and 5 of
    each decade over a wide range, at round steps inside one decade."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter, NullLocator

    low, high = float(values.min()), float(values.max())
    wide = low > 0 and high / low >= 10
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)) if wide else MaxNLocator(6, steps=[1, 2, 5, 10]))
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}" if v >= 1000 else f"{v:g}"))
    axis.set_minor_locator(NullLocator())
    axis.set_minor_formatter(NullFormatter())


def draw_rtfx_vs_batch(runs: list[Run]) -> object | str:
    frame = plot_frame(runs).dropna(subset=["RTFx"])
    batches = sorted(frame["batch"].unique())
    if len(batches) < 2:
        only = f"batch size {batches[0]}" if batches else "no batch size with a measured RTFx"
        return (
            f"No RTFx-vs-batch plot: every run is at {only}; sweep run.batch_size (e.g. run.batch_size=1,8,32) "
            "to draw one."
        )
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    frame = frame.assign(label=_labels(frame))
    for label, group in frame.groupby("label", sort=True):
        group = group.sort_values("batch")
        ax.errorbar(group["batch"], group["RTFx"], yerr=_interval(group), marker="o", capsize=3, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.xaxis.set_minor_locator(plt.NullLocator())
    ax.set_yscale("log")
    _plain_log_axis(ax.yaxis, pd.concat([frame["RTFx low"], frame["RTFx high"], frame["RTFx"]]).dropna())
    # a bench.load run's "batch" is its clients' concurrency (the server batches as it will)
    axis = "concurrency" if all(run.summary.online for run in runs) else "batch size"
    ax.set_xlabel(axis)
    ax.set_ylabel("RTFx (audio seconds per second, log scale)")
    ax.set_title(title(f"RTFx vs {axis}", frame), fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, title=CI_NOTE, title_fontsize=7)
    fig.tight_layout()
    return fig


def draw_wer_vs_rtfx(runs: list[Run]) -> object | str:
    frame = plot_frame(runs).dropna(subset=["WER", "RTFx"])
    if frame.empty:
        return (
            "No WER-vs-RTFx plot: no run has a WER (random weights emit random tokens); "
            "measure with model.weights=pretrained to draw it."
        )
    plt = _pyplot()
    frame = frame.assign(label=_labels(frame))
    many = frame["label"].nunique() > 6  # a ladder of models and dtypes: the legend goes beside the axes
    fig, ax = plt.subplots(figsize=(11, 5) if many else (7, 4.5))
    colours = plt.get_cmap("tab20").colors if many else [None] * frame["label"].nunique()  # 20: enough apart
    for (label, group), colour in zip(frame.groupby("label", sort=True), colours, strict=False):
        ax.errorbar(group["RTFx"], 100 * group["WER"], xerr=_interval(group), fmt="o", capsize=3, label=label,
                    color=colour)  # fmt: skip
        for _, row in group.iterrows():
            ax.annotate(f"b{row['batch']}", (row["RTFx"], 100 * row["WER"]), textcoords="offset points",
                        xytext=(4, 4), fontsize=7)  # fmt: skip
    front = pareto_front(frame)
    ax.plot(front["RTFx"], 100 * front["WER"], "k--", linewidth=1, label="Pareto front")
    ax.set_xscale("log")
    _plain_log_axis(ax.xaxis, pd.concat([frame["RTFx low"], frame["RTFx high"], frame["RTFx"]]).dropna())
    ax.set_xlabel("RTFx (higher is faster, log scale)")
    ax.set_ylabel("WER % (lower is better)")
    ax.set_ylim(0, 100 * frame["WER"].max() * 1.2 or 1)  # from 0: a narrow band would magnify small gaps
    ax.set_title(title("WER vs RTFx", frame), fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    if many:
        ax.legend(fontsize=7, title=CI_NOTE, title_fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    else:
        ax.legend(fontsize=8, title=CI_NOTE, title_fontsize=7)
    fig.tight_layout()
    return fig


def save(fig, path: Path) -> None:
    plt = _pyplot()
    try:
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)


PLOTS = {"wer_vs_rtfx.png": draw_wer_vs_rtfx, "rtfx_vs_batch.png": draw_rtfx_vs_batch}


def draw_all(runs: list[Run], out: Path, prefix: str = "") -> tuple[list[str], list[str]]:
    """Every figure the runs allow, saved under out; (file names written, why-not sentences)."""
    written, missing = [], []
    for name, draw in PLOTS.items():
        fig = draw(runs)
        if isinstance(fig, str):
            missing.append(fig)
        else:
            save(fig, out / f"{prefix}{name}")
            written.append(f"{prefix}{name}")
    return written, missing
