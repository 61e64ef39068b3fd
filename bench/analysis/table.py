"""Text tables: run summaries for the terminal, and Markdown for reports."""

from __future__ import annotations

import math

import pandas as pd


def markdown(frame: pd.DataFrame) -> str:
    """A Markdown table (no optional tabulate dependency); floats to 3 significant digits."""

    def cell(value):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "n/a"
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def rtfx_ci_cell(summary: dict) -> str:
    """A run's RTFx 95% interval as a table cell."""
    ci = summary.get("rtfx_ci")
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "-"


def summary_frame(summaries: list[dict]) -> pd.DataFrame:
    def gib(value):
        return float("nan") if value is None else value / 2**30

    def num(value):
        return float("nan") if value is None else value

    return pd.DataFrame(
        [
            {
                "engine": s["engine"],
                "model": f"{s['model']} ({s['weights']}, {s['scale']})",
                "dataset": s["dataset"]["name"],
                "batch": s["batch_size"],
                "n": s["n_utterances"] - s["n_failed"],
                "failed": s["n_failed"],
                "audio_s": s["audio_seconds"],
                "RTFx": num(s["rtfx"]),
                "RTFx 95% CI": rtfx_ci_cell(s),
                "WER": num(s["wer"]),
                "tok/s": num(s["decode_tokens_per_s"]),
                "p50_s": num(s["latency_p50"]),
                "peak_GiB": gib(s["peak_gpu_memory_bytes"]),
                "load_s": s["load_seconds"],
                "cold_s": num(s["cold_start_seconds"]),
            }
            for s in summaries
        ]
    )


def format_summaries(summaries: list[dict]) -> str:
    frame = summary_frame(summaries)
    return frame.to_string(index=False, float_format=lambda v: f"{v:.3g}", na_rep="n/a")
