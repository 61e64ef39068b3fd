"""The verdict at the top of a reference folder's README: each model on its fastest engine
measured there, per batch size on the synthetic 30 s clips, with that engine's decode step
against the measured ceiling, and how many times faster one model's best is than another's.

The rule (docs/gpu-suites.md, "The verdict"): a model's fastest engine is the one with the
highest RTFx. The ratio of two models' bests comes with a 95% interval over both runs' timed
passes (bench.analysis.runs.speed_ratio, the estimator of every ratio in the folder), the
faster model's best over the next one's: "faster" when the interval lies above 1, else
"within noise". Two runs of different leases are said to be, with how far the points measured
on both moved (bench.lab.sentinel), since no interval of one lease holds what moves between
leases. A model whose faster path (an engine with Engine.STOCK) has no run at that batch size
is named as judged without it, so a tuned engine beside an untuned one is never read as a
verdict on the models.
"""

from __future__ import annotations

import pandas as pd

from bench.analysis.runs import speed_ratio
from bench.analysis.table import markdown
from bench.engines import faster_paths
from bench.lab.plans import family

SYNTHETIC = "synthetic"
LIMITS = ("step / ceiling", "step / roofline")  # a decode step against bench.lab.ceiling's two limits


def _word(low: float) -> str:
    """The word for a ratio of at least 1 (the faster best over the slower) by its interval."""
    return "faster (the interval lies above 1)" if low > 1 else "within noise (the interval holds 1)"


def recorded_leases(a, b) -> str:
    """The words for two runs of different recorded leases (bench.host.environment.lease), where
    the folder knows no more of them (bench.lab.sentinel.across_note says how far points moved)."""
    from bench.host.environment import lease_label

    leases = lease_label(a.summary.environment), lease_label(b.summary.environment)
    if None not in leases and leases[0] != leases[1]:
        return (f"measured on different leases ({leases[0]}, {leases[1]}): the interval does not hold what moves "
                "between leases")  # fmt: skip
    return ""


def verdict_lines(runs, ceilings: pd.DataFrame | None, across=recorded_leases) -> list[str]:
    """The README's verdict section (nothing when the folder has no synthetic runs); across(a, b)
    gives the words for two runs of different leases ("" for one lease)."""
    grid = [r for r in runs if r.summary.dataset.name == SYNTHETIC and "_without_" not in r.path.name]
    if not grid:
        return []
    fast = faster_paths()
    rows, sentences = [], []
    for batch in sorted({r.summary.batch_size for r in grid}):
        here = [r for r in grid if r.summary.batch_size == batch]
        bests = []
        for model in sorted({r.summary.model for r in here}):
            of_model = [r for r in here if r.summary.model == model]
            best = max(of_model, key=lambda r: r.summary.rtfx)
            ci = best.summary.rtfx_ci
            row = {"batch": batch, "model": model, "fastest engine": best.summary.engine, "RTFx": best.summary.rtfx,
                   "RTFx 95% CI": f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "-"}  # fmt: skip
            for limit in LIMITS:
                column = f"{best.summary.engine} {limit}"
                cell = (
                    ceilings.loc[ceilings.batch == batch, column] if ceilings is not None and column in ceilings else []
                )
                row[limit] = float(cell.iloc[0]) if len(cell) and pd.notna(cell.iloc[0]) else None
            rows.append(row | {"engines measured": len(of_model)})
            engines = {r.summary.engine for r in of_model}
            missing = sorted(e for e in fast if family(e) == family(best.summary.engine) and e not in engines)
            if missing:
                sentences.append(
                    f"- batch {batch}: {model} is judged without its faster path {', '.join(missing)} (no run at "
                    f"this batch size here): its figure is of {best.summary.engine}, not of the model at its best."
                )
            bests.append(best)
        bests.sort(key=lambda r: -r.summary.rtfx)  # the fastest model first: "A is 1.3x B"
        for a, b in zip(bests, bests[1:], strict=False):
            point, low, high = speed_ratio(a, b)
            leases = across(a, b)
            sentences.append(
                f"- batch {batch}: {a.summary.model} on {a.summary.engine} is {point:.2f}x [{low:.2f}, {high:.2f}] "
                f"{b.summary.model} on {b.summary.engine}: {_word(low)}{f' ({leases})' if leases else ''}."
            )
    header = [
        "## Verdict: each model on its fastest engine (synthetic 30 s clips)",
        "",
        "The engine with the highest RTFx for each model, its decode step as a multiple of the measured "
        "ceiling and of the roofline where the folder has them (bench.lab.ceiling), and the models' bests "
        "compared with a 95% interval (the rule: docs/gpu-suites.md).",
        "",
    ]
    return [*header, markdown(pd.DataFrame(rows)), *sentences, ""]
