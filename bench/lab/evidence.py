"""What a results folder holds beside its grid of runs, read back for its README.

- gemv_ceiling.txt: the printed output of a GEMV-only decode step (every decoder weight
  matrix and lm_head read once by the same matrix-product calls, in one CUDA graph: the
  folder keeps the script that printed it), the practical limit next to copy bandwidth;
- repeat-runs/: ordinary run folders measured in alternation, to settle an ablation row
  that one run per setting cannot (a moment or a process can move a whole run);
- results/agreement/<same name>/: bench.agreement's per-clip table for the same GPU;

and, for any run, what Inductor's on-disk cache gave its cold start (compile_cache_cell): every
table of cold starts shows it beside them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from bench.analysis.table import markdown
from bench.pipeline.cells import table_row
from bench.pipeline.record import Summary

CEILING_FILE = "gemv_ceiling.txt"
REPEAT_RUNS = "repeat-runs"
_CEILING_LINE = re.compile(r"M=(?P<rows>\d+): (?P<ms>[\d.]+) ms, (?P<gb>[\d.]+) GB, (?P<gbps>[\d.]+) GB/s")


# the order phases run in (a host-feature engine runs features before h2d); others follow
PHASES = ("features", "h2d", "encode", "merge", "prefill", "generate", "decode", "detokenise")


def phase_means(batches: pd.DataFrame) -> dict[str, float]:
    """Milliseconds per timed batch in each phase the engine marked (mean over every pass)."""
    names = [c.removeprefix("phase_").removesuffix("_s") for c in batches.columns if c.startswith("phase_")]
    names.sort(key=lambda n: PHASES.index(n) if n in PHASES else len(PHASES))
    return {f"{n} ms": 1e3 * batches[f"phase_{n}_s"].mean() for n in names}


def _phases_in_order(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with its phase columns in the order phases run, whichever run showed one first."""
    phases = [c for c in frame.columns if c.endswith(" ms") and c.removesuffix(" ms") in PHASES]
    phases.sort(key=lambda c: PHASES.index(c.removesuffix(" ms")))
    rest = [c for c in frame.columns if c not in phases]
    return frame[rest + phases]


def ordered_phase_frame(rows: list[dict]) -> pd.DataFrame:
    return _phases_in_order(pd.DataFrame(rows))


def phase_frame(runs) -> pd.DataFrame:
    """Per engine and batch size, where its timed batches' time went."""
    rows = []
    for run in sorted(runs, key=lambda r: (r.summary.batch_size, r.summary.engine)):
        s = run.summary
        rows.append({"engine": s.engine, "batch": s.batch_size, **phase_means(run.batches)})
    return _phases_in_order(pd.DataFrame(rows))


def ceiling_frame(
    out: Path, speed: pd.DataFrame, copy_bw: float, weight_bytes: dict[str, float]
) -> pd.DataFrame | None:
    """Per batch size the ceiling's step time, its bandwidth and share of copy bandwidth, and
    each engine's measured decode step as a multiple of it (1.0 would be at the limit): the
    engines whose decoder reads the weights the ceiling read (`weight_bytes`, within 2%)."""
    path = out / CEILING_FILE
    if not path.exists():
        return None
    rows = []
    for match in _CEILING_LINE.finditer(path.read_text()):
        batch, ms, gb = int(match["rows"]), float(match["ms"]), float(match["gb"])
        row = {
            "batch": batch,
            "ceiling ms/step": ms,
            "GB read": gb,
            "GB/s": gb / ms * 1e3,
            "% of copy BW": 100 * gb * 1e9 / (ms / 1e3) / copy_bw,
        }
        for engine, group in speed.groupby("engine", sort=True):
            if abs(weight_bytes.get(engine, 0) - gb * 1e9) > 0.02 * gb * 1e9:
                continue  # another model's decoder
            step = group.loc[group.batch == batch, "ms/step"]
            row[f"{engine} step / ceiling"] = float(step.iloc[0]) / ms if len(step) and pd.notna(step.iloc[0]) else None
        rows.append(row)
    return pd.DataFrame(rows) if rows else None


def ceiling_lines(out: Path, frame: pd.DataFrame | None) -> list[str]:
    """The README's section on the ceiling: ceiling_frame's table, with what it measured."""
    if frame is None:
        return []
    scripts = sorted(p.name for p in out.glob("*.py"))
    by = f" (measured by {', '.join(scripts)}; its output in {CEILING_FILE})" if scripts else ""
    return [
        "### Practical limit: a GEMV-only decode step",
        "",
        "Every decoder weight matrix and lm_head read once by the same matrix-product calls, captured "
        f"in one CUDA graph, nothing else{by}. No engine using these kernels can take a shorter decode "
        "step; `step / ceiling` is each engine's measured step (the speed table's ms/step) as a multiple of it.",
        "",
        markdown(frame),
    ]


def compile_cache_cell(summary: Summary) -> str | None:
    """What Inductor's on-disk cache gave the run's cold start (a graph read back from it costs
    seconds less than one built): "R of N read" where the run counted its compiles, with the
    seconds its warm-up spent compiling where it recorded them ("R of N read, S s"); for a run
    measured before those were counted, what the cache held at load ("empty": every compile
    was built; "held N": some may have been read back); None where Inductor compiled nothing."""
    report = summary.engine_report or {}
    if "inductor_graphs_read_from_cache" in report:
        read, built = report["inductor_graphs_read_from_cache"], report["inductor_graphs_built"]
        seconds = f", {summary.compile_seconds:.1f} s" if summary.compile_seconds is not None else ""
        return f"{read} of {read + built} read{seconds}" if read + built else None
    held = report.get("inductor_cached_graphs_at_load")
    return None if held is None else "empty" if held == 0 else f"held {held}"


COMPILE_CACHE_NOTE = (
    "compile cache: what Inductor's on-disk cache gave the cold start of a run that compiles: "
    '"R of N read, S s" (R of its N graphs read back, the rest built; S: the seconds its warm-up spent '
    "compiling, read-back graphs included, where the run recorded them), or for a run measured before "
    'those were counted what the cache held at load ("empty": every graph built; "held N": some '
    "may have been read back). A graph read back costs seconds less than one built, so cold starts "
    "compare only between runs with the same cache state; RTFx, measured after the cold start, did not "
    "move with it where both states were measured (docs/gpu-suites.md)."
)


def repeat_runs_frame(out: Path) -> pd.DataFrame | None:
    """The runs under out/repeat-runs in the order they finished: RTFx, decode steps and
    where each timed batch's time went."""
    from bench.analysis.runs import load_runs

    folder = out / REPEAT_RUNS
    if not folder.exists() or not any(folder.glob("*/summary.json")):
        return None
    runs = sorted(load_runs([str(folder)]), key=lambda r: r.summary.environment["timestamp"])
    every_patch = {engine: set() for engine in {r.summary.engine for r in runs}}
    for run in runs:
        every_patch[run.summary.engine] |= set(run.summary.patches)
    rows = []
    for run in runs:
        s, cells = run.summary, table_row(run.summary)
        missing = sorted(every_patch[s.engine] - set(s.patches))
        row = {
            "run": run.path.name,
            "finished (UTC)": s.environment["timestamp"][11:19],
            "engine": s.engine,
            "patches": "all but " + ", ".join(missing) if missing else "all",
            **{key: cells[key] for key in ("batch", "RTFx", "RTFx 95% CI")},
            "decode steps": s.decode_steps,
            "tokens": s.n_tokens,
            "ms/step": cells["ms/step"],
            "cold start s": cells["cold start s"],
            "compile cache": compile_cache_cell(s),
        }
        rows.append({**row, **phase_means(run.batches)})
    return _phases_in_order(pd.DataFrame(rows))


def repeat_runs_lines(out: Path) -> list[str]:
    frame = repeat_runs_frame(out)
    if frame is None:
        return []
    return [
        f"## Runs repeated in alternation ({REPEAT_RUNS}/)",
        "",
        "Ordinary `python -m bench` runs, in the order they finished; `patches` is relative to the "
        "most any of them had on. Phases in milliseconds per timed batch (mean over every pass).",
        "",
        markdown(frame),
    ]


def agreement_folder(out: Path) -> Path:
    """results/reference/<gpu> -> results/agreement/<gpu>"""
    return out.parent.parent / "agreement" / out.name


def agreement_lines(out: Path) -> list[str]:
    from bench.lab.agreement import headline

    folder = agreement_folder(out)
    if not (folder / "agreement.csv").exists():
        return []
    frame = pd.read_csv(folder / "agreement.csv")
    title, settings = "## Agreement", []
    if (folder / "agreement.md").exists():  # "# <fast> vs <stock>", then hardware, model, dtype, patches
        paragraphs = (folder / "agreement.md").read_text().split("\n\n")
        title = "## Agreement with " + paragraphs[0].removeprefix("# ").split(" vs ")[-1].strip()
        settings = [paragraphs[1].strip(), ""] if len(paragraphs) > 1 else []
    return [
        title,
        "",
        f"From `{folder.as_posix()}/agreement.csv` (bench.agreement; per clip there):",
        "",
        *settings,
        markdown(pd.DataFrame([headline(frame)])),
    ]
