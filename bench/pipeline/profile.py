"""profile=true: where one warm batch's time goes, phase by phase, from a torch.profiler trace.

The phases are the ones every engine marks in its timed region (clock.phase / begin-end,
each also a record_function range named "phase:<name>"). Every profiled operation is
charged to the phase whose range holds its start. Per phase:

- wall_ms: the phase's host-side duration;
- device_ms: on CUDA, the summed duration of the kernels and copies launched from it (see
  _device_ms for how a kernel finds the phase that launched it);
- kernels: on CUDA, kernel launches (cudaLaunchKernel and friends; one cudaGraphLaunch
  counts as one); on the CPU, innermost aten operators, the CPU's unit of work;
- host_syncs: points where the host must wait for the device: scalar reads
  (aten::_local_scalar_dense, behind .item(), bool(), int()), data-dependent shapes
  (aten::nonzero, behind boolean-mask indexing), and explicit CUDA synchronize calls;
- lagged_waits: synchronize calls inside the lagged end-of-sequence read's range
  (end_of_sequence.LAGGED_WAIT): the host waits for a step while the next one is queued
  behind it, so the GPU is not starved; not counted as host syncs, which stall it;
- copies: on CUDA, cudaMemcpy* calls; on the CPU, aten copies (copy_ / _to_copy);
- idle_share: on CUDA, the part of the phase's wall time the GPU ran nothing.
A "decode, per step" row divides the decode phase by the engine's decode step count.
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
import torch

from bench.analysis.table import markdown
from bench.engines._fast.end_of_sequence import LAGGED_WAIT
from bench.pipeline.clock import Clock

SYNC_OPS = ("aten::_local_scalar_dense", "aten::nonzero")
SYNC_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")
LAUNCH_CALLS = (
    "cudaLaunchKernel",
    "cudaLaunchKernelExC",
    "cuLaunchKernel",
    "cuLaunchKernelEx",
    "cudaGraphLaunch",
)
PHASE_PREFIX = "phase:"


@dataclass
class Profile:
    phases: pd.DataFrame
    verdict: str
    summary: dict


def _is_host(event) -> bool:
    return event.device_type == torch.autograd.DeviceType.CPU


def _is_device_work(event) -> bool:
    """A kernel, copy or memset that ran on the GPU. On CUDA every record_function range has a
    GPU-side twin of the same name (a "gpu_user_annotation" spanning the work it enclosed);
    it is no work of its own, and its id is not a launch's correlation id."""
    return event.device_type == torch.autograd.DeviceType.CUDA and not getattr(event, "is_user_annotation", False)


def _phase_ranges(events) -> list[tuple[str, float, float]]:
    """The phases as the host ran them (their GPU-side annotations left out: counting both
    doubled every phase's wall time on a real CUDA trace)."""
    ranges = [
        (e.name.removeprefix(PHASE_PREFIX), e.time_range.start, e.time_range.end)
        for e in events
        if e.name.startswith(PHASE_PREFIX) and _is_host(e)
    ]
    return sorted(ranges, key=lambda r: r[1])  # in the order they ran


def _owner(start: float, ranges) -> str | None:
    for name, low, high in ranges:
        if low <= start <= high:
            return name
    return None


def _ancestor_is_sync_op(event) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if parent.name in SYNC_OPS:
            return True
        parent = parent.cpu_parent
    return False


def _is_device_work_call(name: str) -> bool:
    return name in LAUNCH_CALLS or name.startswith(("cudaMemcpy", "cudaMemset"))


def _host_events_by_phase(events, ranges) -> list[tuple[object, str]]:
    """Each host-side event with the phase whose range holds its start (events outside any
    phase, and the phase ranges themselves, left out)."""
    owned = []
    for event in events:
        if not _is_host(event) or event.name.startswith(PHASE_PREFIX):
            continue
        phase = _owner(event.time_range.start, ranges)
        if phase is not None:
            owned.append((event, phase))
    return owned


OUTSIDE = "(outside phases)"


def batch_device_ms(events) -> float:
    return sum((e.time_range.end - e.time_range.start) / 1e3 for e in events if _is_device_work(e))


def _device_ms(events, owned, phases) -> tuple[dict[str, float], float]:
    """Device time per phase, and of the whole batch.

    Each kernel, copy or memset is charged to the phase whose host range holds the runtime
    call that launched it (cudaLaunchKernel, cudaMemcpyAsync, cudaGraphLaunch...): the call
    and the work it started share a correlation id. That covers a CUDA graph replay too,
    whose kernels have no operator around their launch. Work whose launch lay outside every
    phase goes to OUTSIDE, so the phases and OUTSIDE add up to the batch's device time.
    """
    call_phase = {event.id: phase for event, phase in owned if _is_device_work_call(event.name)}
    by_phase = dict.fromkeys([*phases, OUTSIDE], 0.0)
    total = 0.0
    for event in events:
        if _is_device_work(event):
            ms = (event.time_range.end - event.time_range.start) / 1e3
            by_phase[call_phase.get(event.id, OUTSIDE)] += ms
            total += ms
    return by_phase, total


COUNTS = ("kernels", "host_syncs", "lagged_waits", "copies")


def _empty_row() -> dict:
    return dict(wall_ms=0.0, device_ms=0.0, **dict.fromkeys(COUNTS, 0))


def _is_sync(event) -> bool:
    return event.name in SYNC_OPS or (event.name in SYNC_CALLS and not _ancestor_is_sync_op(event))


def phase_table(events, cuda: bool, decode_steps: int) -> pd.DataFrame:
    ranges = _phase_ranges(events)
    waits = [(e.time_range.start, e.time_range.end) for e in events if e.name == LAGGED_WAIT and _is_host(e)]
    stats = {name: _empty_row() for name, _, _ in ranges}
    for name, low, high in ranges:
        stats[name]["wall_ms"] += (high - low) / 1e3
    owned = _host_events_by_phase(events, ranges)
    device_ms, _ = _device_ms(events, owned, list(stats))
    if cuda and device_ms[OUTSIDE] > 0:
        stats[OUTSIDE] = _empty_row()
    for name in stats:
        stats[name]["device_ms"] = device_ms[name]
    for event, phase in owned:
        row = stats[phase]
        if _is_sync(event):
            lagged = any(low <= event.time_range.start <= high for low, high in waits)
            row["lagged_waits" if lagged else "host_syncs"] += 1
        if cuda:
            row["kernels"] += event.name in LAUNCH_CALLS
            row["copies"] += event.name.startswith("cudaMemcpy")
        else:
            row["kernels"] += event.name.startswith("aten::") and not event.cpu_children
            row["copies"] += event.name in ("aten::copy_", "aten::_to_copy")
    frame = pd.DataFrame([{"phase": name, **row} for name, row in stats.items()])
    order = {}
    for name in [*(r[0] for r in ranges), OUTSIDE]:
        order.setdefault(name, len(order))
    frame = frame.sort_values("phase", key=lambda s: s.map(order)).reset_index(drop=True)
    if cuda:  # the share of the phase's wall time no device work ran (none for work outside phases)
        wall = frame.wall_ms.where(frame.wall_ms > 0)
        frame["idle_share"] = (1 - frame.device_ms / wall).clip(lower=0, upper=1)
    else:
        frame["idle_share"] = np.nan
    if decode_steps and "decode" in set(frame.phase):
        decode = frame[frame.phase == "decode"].iloc[0]
        per_step = {"phase": "decode, per step"}
        for column in ("wall_ms", "device_ms", *COUNTS):
            per_step[column] = decode[column] / decode_steps
        per_step["idle_share"] = decode["idle_share"]
        frame = pd.concat([frame, pd.DataFrame([per_step])], ignore_index=True)
    return frame


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


def invariant_violations(frame: pd.DataFrame, batch_device_ms: float | None, batch_wall_ms: float) -> list[str]:
    """What this trace breaks of what a phase table must satisfy (none: it can be trusted): its
    phases do not overlap nor count twice (their wall time within the batch's, 1% of slack for
    the two clocks); with device time (CUDA), every kernel and copy of the batch is charged to
    one phase, once (the phases add up to the batch's device time)."""
    phases = frame[frame.phase != "decode, per step"]
    broken = []
    wall = float(phases.wall_ms.sum())
    if wall > 1.01 * batch_wall_ms + 0.1:
        broken.append(f"the phases' wall time ({wall:.1f} ms) exceeds the batch's ({batch_wall_ms:.1f} ms)")
    if batch_device_ms is not None:
        device = float(phases.device_ms.sum())
        if abs(device - batch_device_ms) > 1e-3 * batch_device_ms + 1e-3:
            broken.append(f"the phases' device time ({device:.1f} ms) is not the batch's ({batch_device_ms:.1f} ms)")
    return broken


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
