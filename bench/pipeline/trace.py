"""A torch.profiler trace read phase by phase: the table bench.pipeline.profile writes for profile=true.

The phases are the ones every engine marks in its timed region (clock.phase / begin-end,
each also a record_function range named "phase:<name>"). Every profiled operation is
charged to the phase whose range holds its start. Per phase:

- wall_ms: the phase's host-side duration;
- device_ms: on CUDA, the summed duration of the kernels and copies launched from it (see
  _device_work for how a kernel finds the phase that launched it);
- kernels: on CUDA, kernel launches (cudaLaunchKernel and friends; one cudaGraphLaunch
  counts as one); on the CPU, innermost aten operators, the CPU's unit of work;
- device_kernels: on CUDA, the kernels the GPU ran for the phase, each kernel of a replayed
  CUDA graph counted (where launches count the replay once); none on the CPU
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

import numpy as np
import pandas as pd
import torch

from bench.engines._fast.end_of_sequence import LAGGED_WAIT

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


def _device_work(events, owned, phases) -> tuple[dict[str, float], dict[str, int]]:
    """Device time per phase, and the kernels the GPU ran per phase (a graph replay's each).

    Each kernel, copy or memset is charged to the phase whose host range holds the runtime
    call that launched it (cudaLaunchKernel, cudaMemcpyAsync, cudaGraphLaunch...): the call
    and the work it started share a correlation id. That covers a CUDA graph replay too,
    whose kernels have no operator around their launch. Work whose launch lay outside every
    phase goes to OUTSIDE, so the phases and OUTSIDE add up to the batch's device time.
    """
    ms_by_phase = dict.fromkeys([*phases, OUTSIDE], 0.0)
    kernels = dict.fromkeys([*phases, OUTSIDE], 0)
    for event, phase in device_work_by_phase(events, owned):
        ms_by_phase[phase] += (event.time_range.end - event.time_range.start) / 1e3
        kernels[phase] += _is_kernel(event)
    return ms_by_phase, kernels


def device_work_by_phase(events, owned) -> list[tuple[object, str]]:
    """Each kernel, copy or memset the GPU ran, with the phase that launched it (_device_work)."""
    call_phase = {event.id: phase for event, phase in owned if _is_device_work_call(event.name)}
    return [(e, call_phase.get(e.id, OUTSIDE)) for e in events if _is_device_work(e)]


def _is_kernel(event) -> bool:
    return not event.name.startswith(("Memcpy", "Memset"))


def decode_kernels(events, steps: int, top: int = 15) -> pd.DataFrame:
    """The kernels the GPU ran in the decode phase, launched one by one or replayed from a CUDA
    graph (one launch, many kernels), per step: how many of each and their device time, the
    costliest first. Where a step's time goes that launch counts cannot show."""
    owned = _host_events_by_phase(events, _phase_ranges(events))
    rows: dict[str, list[float]] = {}
    for event, phase in device_work_by_phase(events, owned):
        if phase == "decode" and _is_kernel(event):
            row = rows.setdefault(event.name, [0, 0.0])
            row[0] += 1
            row[1] += (event.time_range.end - event.time_range.start) / 1e3
    frame = pd.DataFrame(
        [
            {"kernel": name[:80], "per step": n / steps, "device µs per step": 1e3 * ms / steps}
            for name, (n, ms) in rows.items()
        ]
    )
    if frame.empty:
        return frame
    return frame.sort_values("device µs per step", ascending=False).head(top).reset_index(drop=True)


COUNTS = ("kernels", "device_kernels", "host_syncs", "lagged_waits", "copies")


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
    device_ms, device_kernels = _device_work(events, owned, list(stats))
    if cuda and device_ms[OUTSIDE] > 0:
        stats[OUTSIDE] = _empty_row()
    for name in stats:
        stats[name]["device_ms"] = device_ms[name]
        stats[name]["device_kernels"] = device_kernels[name]  # a graph replay's each (launches count it once)
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
    else:  # no device: neither idle time nor kernels of its own
        frame["idle_share"] = np.nan
        frame["device_kernels"] = np.nan
    if decode_steps and "decode" in set(frame.phase):
        decode = frame[frame.phase == "decode"].iloc[0]
        per_step = {"phase": "decode, per step"}
        for column in ("wall_ms", "device_ms", *COUNTS):
            per_step[column] = decode[column] / decode_steps
        per_step["idle_share"] = decode["idle_share"]
        frame = pd.concat([frame, pd.DataFrame([per_step])], ignore_index=True)
    return frame


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
