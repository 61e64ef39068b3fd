"""profile=true: where one warm batch's time goes, phase by phase, from a torch.profiler trace
(bench.pipeline.trace reads the trace into the phase table; its docstring defines the columns).

The profile is one warm batch after the timed passes: its profile.md holds the phase table,
what it says about the placeholder merge and the decode step, whether the table's
invariants hold on its own trace, and on CUDA the decode phase's costliest kernels per step.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench.analysis.table import markdown
from bench.pipeline.clock import Clock
from bench.pipeline.trace import batch_device_ms, decode_kernels, invariant_violations, phase_table


@dataclass
class Profile:
    phases: pd.DataFrame
    verdict: str
    summary: dict


KINETO_LINE = re.compile(r"^(USDT|STAGE):\S+ \S+ \d+:\d+ \w+\.cpp:\d+\]")


@contextmanager
def _without_kineto_lines():
    """torch's profiler library (Kineto) writes "USDT: ... profiler_start" lines to the process's
    stderr, from C++, and no setting turns them off. Standard error goes to a file meanwhile and
    comes back afterwards without those lines, so any other message (a warning, an error) stays."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            for line in held.read().decode(errors="replace").splitlines(keepends=True):
                if not KINETO_LINE.match(line):
                    sys.stderr.write(line)
            sys.stderr.flush()


def invariants_lines(profile: dict) -> list[str]:
    """What the check of the phase table on its own trace found (none for a profile taken
    before bench checked it)."""
    if "invariants_broken" not in profile:
        return []
    broken = profile["invariants_broken"]
    if broken:
        return [f"- The phase table breaks its invariants on this trace: {'; '.join(broken)}. Its times are not true."]
    device = "; their device time adds up to the batch's, once" if profile.get("batch_device_ms") is not None else ""
    return [f"- The phase table's invariants hold on this trace: its phases lie within the batch{device}."]


def profile_batch(engine, audios: list[np.ndarray], targets: list[int] | None) -> tuple[Profile, object]:
    """Profile one call of engine.transcribe (the engine should be warm)."""
    from torch.profiler import ProfilerActivity, profile

    cuda = engine.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with warnings.catch_warnings():
        # torch 2.11 warns on every profile that it "clears events at the end of each cycle";
        # a single profile has one cycle and loses nothing (pytorch#180348, fixed in 2.12)
        warnings.filterwarnings("ignore", message=".*clears events at the end of each cycle")
        with _without_kineto_lines(), profile(activities=activities) as prof, Clock(engine.device) as clock:
            engine.transcribe(audios, targets, clock)
    steps = clock.counts.get("decode_steps", 0)
    events = prof.events()
    frame = phase_table(events, cuda, steps)
    summary = {
        "device": str(engine.device),
        "decode_steps": steps,
        "merge_kernels": _value(frame, "merge", "kernels"),
        "decode_kernels_per_step": _value(frame, "decode, per step", "kernels"),
        "decode_device_kernels_per_step": _value(frame, "decode, per step", "device_kernels") if cuda else None,
        "decode_host_syncs_per_step": _value(frame, "decode, per step", "host_syncs"),
        "decode_lagged_waits_per_step": _value(frame, "decode, per step", "lagged_waits"),
        "decode_idle_share": _value(frame, "decode", "idle_share"),
        "batch_wall_ms": clock.wall_s * 1e3,
        # every kernel, copy and memset of the batch, whichever phase launched it
        "batch_device_ms": batch_device_ms(events) if cuda else None,
    }
    # checked on this very trace: a table that breaks them says so instead of being read as true
    summary["invariants_broken"] = invariant_violations(frame, summary["batch_device_ms"], summary["batch_wall_ms"])
    if cuda and summary["decode_idle_share"] is not None:
        decode_wall = _value(frame, "decode", "wall_ms")
        summary["decode_idle_share_of_batch"] = summary["decode_idle_share"] * decode_wall / (clock.wall_s * 1e3)
    verdict = _verdict(engine, frame, summary)
    kernels = decode_kernels(events, steps) if cuda and steps else pd.DataFrame()
    if not kernels.empty:
        verdict += f"\n## The decode phase's costliest kernels, per step\n\n{markdown(kernels)}\n"
    return Profile(frame, verdict, summary), prof


def _value(frame: pd.DataFrame, phase: str, column: str):
    rows = frame[frame.phase == phase]
    if rows.empty or pd.isna(rows.iloc[0][column]):
        return None
    return float(rows.iloc[0][column])


def _verdict(engine, frame: pd.DataFrame, summary: dict) -> str:
    cuda = summary["device"].startswith("cuda")
    unit = "kernel launches" if cuda else "innermost CPU operators"
    lines = [
        f"# Profile of one warm batch: {engine.engine_cfg.name} on {summary['device']}",
        "",
        markdown(frame),
    ]
    if summary["merge_kernels"] is not None:
        lines.append(
            f"- Placeholder merge: {summary['merge_kernels']:.0f} {unit} for the whole batch; "
            "the count does not depend on how many audio tokens are merged (see the tests)."
        )
    if summary["decode_kernels_per_step"] is not None:
        lines.append(decode_line(summary, unit))
    if cuda and summary.get("decode_idle_share") is not None:
        lines.append(
            f"- The GPU sat idle {100 * summary['decode_idle_share']:.0f}% of the decode phase: "
            f"{100 * summary['decode_idle_share_of_batch']:.0f}% of the batch's time is decode overhead."
        )
    elif not cuda:
        lines.append("- On the CPU there is no device to sit idle; profile on a GPU for idle shares.")
    lines += invariants_lines(summary)
    return "\n".join(lines) + "\n"


def decode_line(summary: dict, unit: str) -> str:
    """The decode phase per step: launches, host syncs (stalls), and lagged end-of-sequence waits."""
    line = (f"- Decode: {summary['decode_steps']} steps, {summary['decode_kernels_per_step']:.1f} {unit} and "
            f"{summary['decode_host_syncs_per_step']:.2f} host syncs per step")  # fmt: skip
    waits = summary.get("decode_lagged_waits_per_step")
    if waits:  # a profile from before they were told apart has none: its host syncs include them
        line += (f", and {waits:.2f} lagged end-of-sequence waits per step (the host waited for an earlier "
                 "step while the next was queued: the GPU was not starved)")  # fmt: skip
    return line + "."


def write_profile(result: Profile, prof, run_dir: Path) -> None:
    prof.export_chrome_trace(str(run_dir / "profile_trace.json"))
    result.phases.to_parquet(run_dir / "profile_phases.parquet", index=False)
    (run_dir / "profile.md").write_text(result.verdict)
