"""python -m bench.ladder: the real-weight Whisper ladder on this machine, as a results folder.

    python -m bench.ladder --out results/real_weights/cpu_ladder          # measure (resumable)
    python -m bench.ladder --out results/real_weights/cpu_ladder --write  # the tables, again

The plan is data (conf/ladder.yaml): every engine listed, and each variant (faster_whisper
in int8 beside its float32), on every model, voice and batch size, each run alone in its own
process (`python -m bench ...`, the command users run) so its peak resident memory is its
own; then the paired runs, engines taking turns batch by batch in one run per batch size,
so their speed ratios are paired measurements; last, the ablation: the fast path with each
listed patch off alone, on one model and voice, beside its own run with every patch on.

A run whose folder holds a summary.json is kept: the same command again measures only what
is missing (a folder left half-measured is measured again from scratch; a failure is kept as
error.txt and the rest go on). The folder's README, tables, figures and recommendations are
then written from the run folders alone (bench.lab.ladder_folder).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.config import CONF_DIR
from bench.engines import engine_class
from bench.lab.folder import measured_as, record_command
from bench.lab.grid import patches_without
from bench.lab.speed import INCOMPLETE

PLAN = CONF_DIR / "ladder.yaml"
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "ORT_DISABLE_TELEMETRY": "1"}


@dataclass(frozen=True)
class Rung:
    """One run of the ladder: an engine (with a variant's settings, or partners it takes turns
    with) on a model, voice and batch size."""

    engine: str
    model: str
    dataset: str
    batch_size: int
    variant: str | None = None  # the variant's label
    settings: tuple[str, ...] = ()  # Hydra overrides: the plan's, then the variant's
    paired_with: tuple[str, ...] = ()
    repeats: int = 3  # timed passes
    without: str | None = None  # the ablation: this patch off, every other on

    @property
    def label(self) -> str:
        name = f"{self.engine}_{self.variant}" if self.variant else self.engine
        if self.without:
            return f"{name}_without_{self.without}"
        return f"{name}_with_{'_'.join(self.paired_with)}" if self.paired_with else name

    def folder(self, out: Path) -> Path:
        kind = "paired" if self.paired_with else "ablation" if self.without else "runs"
        return measured_as(out / kind / self.dataset / self.model / f"{self.label}_b{self.batch_size}")

    def is_done(self, out: Path) -> bool:
        return (self.folder(out) / "summary.json").is_file()

    def overrides(self) -> list[str]:
        chosen = [f"engine={self.engine}", f"model={self.model}", f"dataset={self.dataset}"]
        chosen += [f"run.batch_size={self.batch_size}", f"run.repeats={self.repeats}", "run.progress=false"]
        if self.paired_with:
            chosen.append(f"run.paired_with=[{','.join(self.paired_with)}]")
        return [*chosen, *self.settings]


def read_plan(path: Path = PLAN) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(path))


def rungs(plan: dict, repeats: int | None = None) -> list[Rung]:
    """The paired runs first (what the fast path is judged on), then per voice, model and batch
    size every engine and every variant, in the plan's order. repeats: instead of the plan's
    (the paired runs keep theirs)."""
    settings = tuple(plan.get("settings", []))
    alone = repeats or plan.get("repeats", 3)
    out = []
    if plan.get("paired"):
        p = plan["paired"]
        out += [Rung(p["engine"], p["model"], p["dataset"], b, None, settings, tuple(p["with"]), p.get("repeats", 3))
                for b in plan["batch_sizes"]]  # fmt: skip
    for dataset in plan["datasets"]:
        for model in plan["models"]:
            for batch in plan["batch_sizes"]:
                out += [Rung(e, model, dataset, batch, None, settings, repeats=alone) for e in plan["engines"]]
                out += [Rung(v["engine"], model, dataset, batch, v["label"], (*settings, *v["overrides"]), (), alone)
                        for v in plan.get("variants", [])]  # fmt: skip
    if plan.get("ablation"):
        out += ablation_rungs(plan["ablation"], plan["batch_sizes"], settings, alone)
    return out


def ablation_rungs(ablation: dict, batch_sizes, settings: tuple[str, ...], repeats: int) -> list[Rung]:
    """The engine with each listed patch off alone, at every batch size (its run with all on is
    the ladder's own, in runs/)."""
    patches = list(engine_class(ablation["engine"]).PATCHES)
    out = []
    for patch in ablation["without"]:
        if patch not in patches:
            raise SystemExit(f"bench.ladder: {ablation['engine']} has no patch {patch!r}; it has: {', '.join(patches)}")
        kept = patches_without(ablation["engine"], patch)
        out += [Rung(ablation["engine"], ablation["model"], ablation["dataset"], b, None, (*settings, kept),
                     repeats=repeats, without=patch) for b in batch_sizes]  # fmt: skip
    return out


def measure(todo: list[Rung], out: Path, budget_minutes: float | None) -> list[Rung]:
    """Each rung not measured yet, in its own process; the ones still missing (failed, or left
    for lack of time), in order."""
    start, longest, failed = time.perf_counter(), 0.0, []
    remaining = [r for r in todo if not r.is_done(out)]
    if len(remaining) < len(todo):
        print(f"{len(todo) - len(remaining)} of {len(todo)} runs already measured in {out}: kept")
    for i, rung in enumerate(remaining):
        if budget_minutes is not None and time.perf_counter() - start + longest > 60 * budget_minutes:
            print(f"time budget of {budget_minutes:g} min reached: {len(remaining) - i} runs left")
            return failed + remaining[i:]
        folder = rung.folder(out)
        if folder.exists():
            print(f"{folder}: measured only in part before; measuring it again from scratch")
            shutil.rmtree(folder)
        print(
            f"[{i + 1}/{len(remaining)}] {rung.dataset} {rung.model} {rung.label} batch {rung.batch_size}", flush=True
        )
        began = time.perf_counter()
        command = [sys.executable, "-m", "bench", *rung.overrides(), f"hydra.run.dir={folder}"]
        done = subprocess.run(command, env={**os.environ, **OFFLINE}, capture_output=True, text=True)
        if done.returncode != 0 or not rung.is_done(out):
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "error.txt").write_text(done.stdout + done.stderr)
            last = (done.stderr.strip().splitlines() or ["no summary.json written"])[-1]
            print(f"  failed ({folder / 'error.txt'}): {last}", flush=True)
            failed.append(rung)
        else:  # what it printed is in summary.json, its settings in config.yaml: Hydra's copies go
            (folder / "__main__.log").unlink(missing_ok=True)
            shutil.rmtree(folder / ".hydra", ignore_errors=True)
        longest = max(longest, time.perf_counter() - began)
    return failed


def parse(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.ladder", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="e.g. results/real_weights/cpu_ladder")
    parser.add_argument("--plan", type=Path, default=PLAN, help="what to measure (default: conf/ladder.yaml)")
    parser.add_argument("--repeats", type=int, default=None, help="timed passes per run instead of the plan's")
    parser.add_argument("--budget-minutes", type=float, default=None, help="start no run that would not fit")
    parser.add_argument("--write", action="store_true", help="only write the folder's tables from its runs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from bench.lab.ladder_folder import write_folder

    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    plan = read_plan(args.plan)
    todo = rungs(plan, args.repeats)
    missing = []
    if not args.write:
        args.out.mkdir(parents=True, exist_ok=True)
        record_command(args.out, "bench.ladder", argv)
        missing = measure(todo, args.out, args.budget_minutes)
    if any(rung.is_done(args.out) for rung in todo):  # what is measured, and a list of what is not
        print(write_folder(args.out, todo, plan))
    if missing:
        print(f"{len(missing)} runs missing: the same command again measures them")
        return INCOMPLETE
    return 0
