"""The ladder's folder (python -m bench.ladder): README, tables, figures and recommendations,
written from its run folders alone. The same runs give the same files byte for byte (every
interval's draws are seeded).

README.md: which bench measured the runs, the folder's findings.md (a person's reading, when
there is one), the commands and the runs still missing; per voice a table of every engine,
model, dtype and batch size (WER and RTFx each with its 95% interval, peak memory, cold
start), its WER-vs-RTFx figure and the recommendation under each constraint set below; then
the paired speed runs with their RTFx ratios and intervals; then the ablation, the fast path
with a patch off beside its run with all on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.analysis.plots import draw_wer_vs_rtfx, save
from bench.analysis.recommendation import Constraints, recommend
from bench.analysis.runs import Run, load_runs, wer_interval
from bench.analysis.table import markdown, wer_percent
from bench.engines import engine_class
from bench.lab.evidence import phase_frame
from bench.lab.folder import not_measured_lines, recorded_commands
from bench.lab.reference_folder import FINDINGS_FILE, provenance_lines, ratio_frame, ratio_markdown
from bench.pipeline.cells import table_row
from bench.stats import PASS_METHOD_WORDS

COLUMNS = ["model", "engine", "dtype", "batch", "n", "WER", "WER 95% CI", "RTFx", "RTFx 95% CI", "passes", "peak GiB",
           "cold start s"]  # fmt: skip
PAIRED_COLUMNS = ["engine", "batch", "n", "WER", "RTFx", "RTFx 95% CI", "passes"]
ABLATION_COLUMNS = ["removed patch", "batch", "WER", "RTFx", "RTFx 95% CI", "decode ms/step", "cold start s"]


def ladder_frame(runs: list[Run]) -> pd.DataFrame:
    """One row per run, WER with its interval (utterances resampled, seeded per run)."""
    rows = []
    for run in runs:
        row = table_row(run.summary)
        interval = wer_interval(run, np.random.default_rng(0))
        row["WER 95% CI"] = f"[{wer_percent(interval[0])}, {wer_percent(interval[1])}]" if interval else "-"
        rows.append(row)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return frame.sort_values(["model", "batch", "engine", "dtype"], kind="stable").reset_index(drop=True)


def missing_lines(out: Path, rungs) -> list[str]:
    missing = [(f"{r.dataset}, {r.model}, {r.label}, batch {r.batch_size}", r.folder(out)) for r in rungs
               if not r.is_done(out)]  # fmt: skip
    return not_measured_lines(missing, len(rungs))


def _timing(runs: list[Run]) -> str:
    """How the runs were timed, each way with how many runs took it."""
    ways: dict[str, int] = {}
    for run in runs:
        s = run.summary
        kind = "paired" if s.paired_with else "alone in its process"
        way = f"{s.warmup_batches} warm-up batch(es), then every batch timed {s.repeats} time(s), {kind}"
        ways[way] = ways.get(way, 0) + 1
    return "; ".join(f"{n} run(s): {way}" for way, n in ways.items())


def _intro_lines(out: Path, runs: list[Run], rungs) -> list[str]:
    hardware = "; ".join(sorted({r.hardware for r in runs}))
    lines = [
        f"# Real-weight Whisper ladder: {hardware}",
        "",
        "Real weights installed as packages (no download), converted for CTranslate2 and read exactly "
        "into every engine. Two voices speak the same 30 texts: `sample` (espeak-ng, robotic) and "
        "`sample_neural` (piper's neural en_US joe voice); neither is recorded speech "
        "(docs/real-weights.md). RTFx = audio seconds / processing seconds (median of the passes), with "
        f"{PASS_METHOD_WORDS}; WER's 95% interval from the utterances resampled; peak GiB is the "
        "process's peak resident memory (Python, libraries and data included); "
        "cold start is the first batch's time after loading.",
        "",
        f"Timing: {_timing(runs)}.",
        "",
    ]
    lines += provenance_lines(runs)
    if (out / FINDINGS_FILE).exists():
        lines += ["## Findings", "", (out / FINDINGS_FILE).read_text().strip(), ""]
    lines += ["## How it was measured", "", "```bash", *recorded_commands(out, comments=True), "```", ""]
    lines += missing_lines(out, rungs)
    lines += ["Tables written again from the runs by:", "", "```bash", f"python -m bench.ladder --out {out} --write",
              "```", ""]  # fmt: skip
    return lines


def _voice_lines(out: Path, dataset: str, runs: list[Run], constraint_sets: list[dict]) -> list[str]:
    frame = ladder_frame(runs)
    frame.to_csv(out / f"ladder_{dataset}.csv", index=False)
    lines = [f"## {dataset}", "", markdown(frame)]
    figure = draw_wer_vs_rtfx(runs)
    if isinstance(figure, str):
        lines += [figure, ""]
    else:
        save(figure, out / f"wer_vs_rtfx_{dataset}.png")
        lines += [f"![WER vs RTFx, every run on {dataset}](wer_vs_rtfx_{dataset}.png)", ""]
    for limits in constraint_sets or [{"title": "no constraint"}]:
        constraints = Constraints(**{k: v for k, v in limits.items() if k != "title"})
        lines += [f"### Recommendation with {limits['title']}", "", recommend(runs, constraints).strip(), ""]
    return lines


def _paired_lines(out: Path, runs: list[Run], paired: dict) -> list[str]:
    engine = paired["engine"]
    frame = pd.DataFrame([table_row(r.summary) for r in runs], columns=PAIRED_COLUMNS)
    frame = frame.sort_values(["batch", "engine"], kind="stable").reset_index(drop=True)
    ratios = ratio_frame(runs, engine)
    ratios.to_csv(out / "paired_ratios.csv", index=False)
    return [
        f"## Side by side: {engine}, {' and '.join(paired['with'])} on {paired['model']}, {paired['dataset']}",
        "",
        "One run per batch size with the engines taking turns batch by batch, so the machine's drift "
        "falls on all alike; each ratio's 95% interval is the paired one over their passes.",
        "",
        markdown(frame),
        f"How many times faster {engine} is (RTFx ratio, 95% CI):",
        "",
        ratio_markdown(ratios, engine),
        "Where the time went: milliseconds per timed batch in each phase (mean over every pass), and the "
        "decode phase over the decode steps (an engine with no prefill phase of its own counts its prefill "
        "in its decode):",
        "",
        markdown(_phases(runs)),
    ]


def _phases(runs: list[Run]) -> pd.DataFrame:
    frame = phase_frame(runs)
    steps = {(r.summary.engine, r.summary.batch_size): r.summary.decode_step_seconds for r in runs}
    per_step = [steps[(e, b)] for e, b in zip(frame["engine"], frame["batch"], strict=True)]
    return frame.assign(**{"decode ms/step": [1e3 * s if s else None for s in per_step]})


def _ablation_lines(runs: list[Run], ablated: list[Run], ablation: dict) -> list[str]:
    """The engine's runs with all patches on (from the ladder's own) and with each one off."""
    engine, model, dataset = ablation["engine"], ablation["model"], ablation["dataset"]
    same = [r for r in runs if (r.summary.engine, r.summary.model, r.summary.dataset.name) == (engine, model, dataset)]
    # the patches the engine had when measured (its all-on runs'): one added since is not "removed"
    patches = set().union(*(s.summary.patches for s in same)) if same else set(engine_class(engine).PATCHES)
    rows = []
    for run in same + ablated:
        s, step = run.summary, run.summary.decode_step_seconds
        removed = ", ".join(sorted(patches - set(s.patches)))
        rows.append({**table_row(s), "removed patch": removed or "(none: all on)", "removed": removed,
                     "decode ms/step": 1e3 * step if step else None})  # fmt: skip
    rows.sort(key=lambda row: (row["batch"], row["removed"]))  # per batch: all on, then each patch off
    return [
        f"## Ablation: {engine} on {model}, {dataset}, with a patch off",
        "",
        "Each row its own run, alone in its process, one after another (not paired: a difference "
        "smaller than the runs' intervals is not the patch's).",
        "",
        markdown(pd.DataFrame(rows, columns=ABLATION_COLUMNS)),
    ]


def write_folder(out: Path, rungs, plan: dict) -> str:
    """README.md and the tables and figures beside it, from the runs of the plan (bench.lab.ladder)
    measured so far; returns the README text."""

    def measured(kind: str) -> list[Run]:
        return load_runs([str(out / kind)]) if any((out / kind).rglob("summary.json")) else []

    runs, paired, ablated = measured("runs"), measured("paired"), measured("ablation")
    lines = _intro_lines(out, runs + paired + ablated, rungs)
    for dataset in [d for d in plan["datasets"] if any(r.summary.dataset.name == d for r in runs)]:
        here = [r for r in runs if r.summary.dataset.name == dataset]
        lines += _voice_lines(out, dataset, here, plan.get("constraints", {}).get(dataset, []))
    if paired:
        lines += _paired_lines(out, paired, plan["paired"])
    if ablated:
        lines += _ablation_lines(runs, ablated, plan["ablation"])
    text = "\n".join(lines).rstrip() + "\n"
    (out / "README.md").write_text(text)
    return text
