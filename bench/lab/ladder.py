"""python -m bench.ladder: the real-weight Whisper ladder on this machine, as a results folder.

    python -m bench.ladder --out results/real_weights/cpu_ladder        # measure (resumable)
    python -m bench.ladder --out results/real_weights/cpu_ladder --write  # the tables, again

Every Whisper engine (openai-whisper as whisper_large_v3, whisper_hf, whisper_compile,
whisper_patched, faster_whisper in float32 and in int8) runs every real model bench can
install offline (tiny.en and base) on both shipped voices (`sample`, espeak-ng; and
`sample_neural`, piper's neural voice) at batch 1 and 8, each run alone in its own process
(`python -m bench ...`, the command users run) so its peak resident memory is its own.
Then whisper_patched, faster_whisper (float32) and openai-whisper on base take turns batch
by batch in one run per batch size, so their speed ratios are paired measurements.

A run whose folder holds a summary.json is kept: the same command again measures only what
is missing (a folder left half-measured is measured again from scratch). When every run is
there, the folder's README, per-voice tables and figures, the recommendations under the
constraint sets below and the paired ratios are written from the run folders alone
(bench.lab.ladder_folder).
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

from bench.lab.folder import record_command
from bench.lab.speed import INCOMPLETE

ENGINES = ("whisper_large_v3", "whisper_hf", "whisper_compile", "whisper_patched", "faster_whisper")
INT8 = "int8"  # faster_whisper's compute type for CPU users, measured beside float32
MODELS = ("whisper_tiny_en", "whisper_base")  # Whisper small: no complete package (docs/real-weights.md)
DATASETS = ("sample_neural", "sample")  # the nearer-to-speech voice first: it is the one that matters
BATCH_SIZES = (8, 1)
PAIRED = ("whisper_patched", ("faster_whisper", "whisper_large_v3"), "whisper_base", "sample_neural")
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "ORT_DISABLE_TELEMETRY": "1"}


@dataclass(frozen=True)
class Rung:
    """One run of the ladder: an engine (and its partners, for a paired run) on a model, voice
    and batch size."""

    engine: str
    model: str
    dataset: str
    batch_size: int
    compute_type: str | None = None  # faster_whisper's, when not the run's dtype
    paired_with: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        name = f"{self.engine}_{self.compute_type}" if self.compute_type else self.engine
        return f"{name}_with_{'_'.join(self.paired_with)}" if self.paired_with else name

    def folder(self, out: Path) -> Path:
        kind = "paired" if self.paired_with else "runs"
        return out / kind / self.dataset / self.model / f"{self.label}_b{self.batch_size}"

    def overrides(self, repeats: int) -> list[str]:
        settings = [
            f"engine={self.engine}",
            f"model={self.model}",
            f"dataset={self.dataset}",
            f"run.batch_size={self.batch_size}",
            f"run.repeats={repeats}",
            "run.progress=false",
            "device=cpu",
            "dtype=float32",
        ]
        if self.compute_type:
            settings.append(f"engine.compute_type={self.compute_type}")
        if self.paired_with:
            settings.append(f"run.paired_with=[{','.join(self.paired_with)}]")
        return settings


def plan() -> list[Rung]:
    """The paired speed runs first (short, and what the fast path is judged on), then every
    engine on every model, voice and batch size, the neural voice first."""
    engine, partners, model, dataset = PAIRED
    rungs = [Rung(engine, model, dataset, b, paired_with=partners) for b in BATCH_SIZES]
    for dataset in DATASETS:
        for model in MODELS:
            for batch in BATCH_SIZES:
                rungs += [Rung(e, model, dataset, batch) for e in ENGINES]
                rungs.append(Rung("faster_whisper", model, dataset, batch, compute_type=INT8))
    return rungs


def is_done(rung: Rung, out: Path) -> bool:
    return (rung.folder(out) / "summary.json").is_file()


def measure(rungs: list[Rung], out: Path, repeats: int, budget_minutes: float | None) -> list[Rung]:
    """Each rung not measured yet, in its own process; the ones still missing (failed, or left
    for lack of time) in order. A failure is kept in the rung's folder as error.txt."""
    start, longest, failed = time.perf_counter(), 0.0, []
    todo = [r for r in rungs if not is_done(r, out)]
    if len(todo) < len(rungs):
        print(f"{len(rungs) - len(todo)} of {len(rungs)} runs already measured in {out}: kept")
    for i, rung in enumerate(todo):
        if budget_minutes is not None and time.perf_counter() - start + longest > 60 * budget_minutes:
            print(f"time budget of {budget_minutes:g} min reached: {len(todo) - i} runs left; run the command again")
            return failed + todo[i:]
        folder = rung.folder(out)
        if folder.exists():
            print(f"{folder}: measured only in part before; measuring it again from scratch")
            shutil.rmtree(folder)
        print(f"[{i + 1}/{len(todo)}] {rung.dataset} {rung.model} {rung.label} batch {rung.batch_size}", flush=True)
        began = time.perf_counter()
        command = [sys.executable, "-m", "bench", *rung.overrides(repeats), f"hydra.run.dir={folder}"]
        done = subprocess.run(command, env={**os.environ, **OFFLINE}, capture_output=True, text=True)
        if done.returncode != 0:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "error.txt").write_text(done.stdout + done.stderr)
            print(f"  failed ({folder / 'error.txt'}): {(done.stderr.strip().splitlines() or [''])[-1]}", flush=True)
            failed.append(rung)
        else:
            (folder / "__main__.log").unlink(missing_ok=True)  # the table it printed is in summary.json
        longest = max(longest, time.perf_counter() - began)
    return failed


def parse(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.ladder", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="e.g. results/real_weights/cpu_ladder")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes over the clips per run")
    parser.add_argument("--budget-minutes", type=float, default=None, help="start no run that would not fit")
    parser.add_argument("--write", action="store_true", help="only write the folder's tables from its runs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    rungs = plan()
    if not args.write:
        args.out.mkdir(parents=True, exist_ok=True)
        record_command(args.out, "bench.ladder", argv)
        missing = measure(rungs, args.out, args.repeats, args.budget_minutes)
        if missing:
            print(f"{len(missing)} runs missing: the same command again measures them")
            return INCOMPLETE
    from bench.lab.ladder_folder import write_folder

    print(write_folder(args.out, rungs))
    return 0
