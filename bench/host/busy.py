"""What else used the machine while a run was timed: other processes' CPU time, the hypervisor's
steal time and the load average, read from Linux's /proc just before and just after every timed
batch (outside its clock, as the energy counter is).

Other processes' CPU time is the whole machine's busy time (user, nice, system, irq, softirq,
over every CPU) less this process's own (all its threads, and the children it waited for). On a
2-core machine one other busy process takes a core the run's threads would have had; a run
timed then measured the host, not the engine.

The rule (docs/measurement.md, "A busy host"): a run was measured on a busy host when, over its
timed batches, other processes used on average at least BUSY_OTHER_CORES of a core, or the
hypervisor took at least BUSY_STEAL of the machine's CPU time. The thresholds are set from the
same run measured idle and under a known load (`python -m bench.busy_host`, committed in
results/host_load/). Off Linux nothing is read and a run says so.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import pandas as pd

BUSY_OTHER_CORES = 0.12
BUSY_STEAL = 0.05
# /proc/stat's cpu line: user nice system idle iowait irq softirq steal (guest time is inside user)
_BUSY_FIELDS, _STEAL_FIELD = (0, 1, 2, 5, 6), 7
COLUMNS = ("host_span_s", "others_cpu_s", "steal_cpu_s", "load_average")  # per timed batch, batches.parquet


@dataclass(frozen=True)
class Reading:
    wall_s: float
    machine_busy_s: float  # every CPU's non-idle time since boot, steal left out
    steal_s: float
    own_s: float  # this process's CPU time: its threads, and the children it has waited for
    load_average: float  # the kernel's 1-minute load average (runnable tasks, this run's threads included)


def read(stat: str = "/proc/stat") -> Reading | None:
    """The machine's CPU counters now; None where /proc/stat cannot be read (not Linux)."""
    try:
        with open(stat) as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        load = os.getloadavg()[0]
    except (OSError, ValueError, IndexError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    own = os.times()
    return Reading(
        wall_s=time.perf_counter(),
        machine_busy_s=sum(fields[i] for i in _BUSY_FIELDS) / tick,
        steal_s=fields[_STEAL_FIELD] / tick if len(fields) > _STEAL_FIELD else 0.0,
        own_s=own.user + own.system + own.children_user + own.children_system,
        load_average=load,
    )


def between(before: Reading | None, after: Reading | None) -> dict[str, float | None]:
    """A timed batch's columns: the span read, other processes' CPU seconds in it, the steal
    seconds and the load average at its end. The kernel counts in ticks (10 ms), so a short
    batch's figure may even fall below 0: it is kept as read and the run's sum clipped."""
    if before is None or after is None:
        return dict.fromkeys(COLUMNS)
    others = (after.machine_busy_s - before.machine_busy_s) - (after.own_s - before.own_s)
    return {
        "host_span_s": after.wall_s - before.wall_s,
        "others_cpu_s": others,
        "steal_cpu_s": after.steal_s - before.steal_s,
        "load_average": after.load_average,
    }


def host_load(batches: pd.DataFrame, cpus: int | None = None) -> dict | None:
    """summary.json's host_load: what else used the machine over the run's timed batches, and
    whether that makes it a busy host by the rule above; None where nothing was read."""
    if "host_span_s" not in batches or not len(batches) or batches.host_span_s.isna().any():
        return None
    span = float(batches.host_span_s.sum())
    if span <= 0:
        return None
    cpus = cpus or os.cpu_count() or 1
    others = max(0.0, float(batches.others_cpu_s.sum())) / span
    steal = max(0.0, float(batches.steal_cpu_s.sum())) / (span * cpus)
    per_pass = [
        round(max(0.0, float(g.others_cpu_s.sum())) / float(g.host_span_s.sum()), 3)
        for _, g in batches.groupby("repeat")
        if float(g.host_span_s.sum()) > 0
    ]
    return {
        "other_processes_cores": round(others, 3),
        "other_processes_cores_per_pass": per_pass,
        "steal_share": round(steal, 4),
        "load_average_max": round(float(batches.load_average.max()), 2),
        "cpus": cpus,
        "busy": others >= BUSY_OTHER_CORES or steal >= BUSY_STEAL,
        "rule": RULE,
    }


RULE = (
    f"busy when other processes used at least {BUSY_OTHER_CORES:g} of a core on average over the timed batches, "
    f"or steal time was at least {BUSY_STEAL:.0%} of the machine's CPU time"
)


def busy_sentence(label: str, load: dict) -> str:
    """One run's busy host in words, with its figures and the rule."""
    figures = f"other processes used {load['other_processes_cores']:.2f} cores on average"
    if load["steal_share"] >= BUSY_STEAL:
        figures += f" and steal time took {load['steal_share']:.0%} of the machine"
    return f"{label} was measured on a busy host ({figures} while it was timed; {load['rule']})"


def is_busy(summary) -> bool:
    """Whether a run (its Summary) was timed on a busy host, by the rule as it stood when it ran."""
    return bool(summary.host_load and summary.host_load.get("busy"))


def busy_notes(summaries) -> list[str]:
    """A sentence for each run timed on a busy host: a table's "busy" always comes with its figures."""
    return [
        busy_sentence(f"{s.engine} at batch {s.batch_size} on {s.model} ({s.dataset.name})", s.host_load)
        for s in summaries
        if is_busy(s)
    ]
