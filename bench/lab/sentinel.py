"""How far points measured on two leases moved, and the sentinel that gives every lease a
point in common with the others (bench.lab.leases says which lease measured a run).

- The sentinel: when a call of bench.reference finds runs of another lease in its folder, it
  measures one point again first: of the planned run points already measured, the one
  measured on the most leases, then the one that took the fewest seconds, then the first in
  the plan.
- Movements: each point measured on more than one lease, later against earlier, by the
  estimator of every ratio (bench.analysis.runs.speed_ratio). No figure is corrected by them:
  points moved alike only where no two of their intervals lie apart (docs/gpu-suites.md,
  "Leases"); a comparison across leases says how far the points measured on both moved.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.lab.grid import Point, measured_points
from bench.lab.leases import EARLIER, lease_of, provenance, recorded_environment, run_lease, stated_environment


def measurements(out: Path) -> dict[Point, dict[str, Path]]:
    """Every finished run point of the folder, with the run folder of each lease it was measured on."""
    found: dict[Point, dict[str, Path]] = {}
    roots = [*sorted(p for p in (out / EARLIER).glob("*") if p.is_dir()), out]  # runs/, the newest, last
    for root in roots:
        for point in measured_points(root):
            folder = point.folder(root)
            found.setdefault(point, {})[run_lease(out, folder, recorded_environment(folder))] = folder
    return found


def sentinel(out: Path, plan: list, here: str) -> Point | None:
    """The point to measure again first on lease `here` (the module's rule), or None: the folder
    holds no run of another lease, or this lease has measured the sentinel already."""
    from bench.lab.budget import point_seconds

    found = measurements(out)
    if not any(lease != here for by_lease in found.values() for lease in by_lease):
        return None
    candidates = [p for p in plan if isinstance(p, Point) and p in found]
    if not candidates:
        return None
    seconds = point_seconds(out)

    def rank(item):
        index, point = item
        return -len(found[point]), seconds.get(point, (float("inf"), False))[0], index

    _, chosen = min(enumerate(candidates), key=rank)
    return None if here in found[chosen] else chosen


@dataclass(frozen=True)
class Movement:
    """One point measured on two leases: how many times faster it ran on the later one."""

    point: Point
    earlier: str
    later: str
    ratio: float
    low: float
    high: float
    versions: tuple[str | None, str | None] = (None, None)  # bench's on the earlier and the later lease
    changes: int = 0  # changes to the engine, or to how passes are timed, between those versions

    @property
    def cell(self) -> str:
        return f"{self.ratio:.2f}x [{self.low:.2f}, {self.high:.2f}]"


def changes_between(engine: str, earlier: str | None, later: str | None) -> int:
    """How many of bench.engines._history's changes to the engine (or to timing) lie between two
    bench versions: a point measured by both moved with those as well as with the lease."""
    from bench.engines._history import changes_to

    return len(changes_to(engine, earlier, later))


def _runs_by_lease(by_lease: dict[str, Path]):
    from bench.analysis.runs import Run
    from bench.pipeline.record import Summary

    runs = {lease: Run(folder, Summary.read(folder)) for lease, folder in by_lease.items()}
    # oldest first: by timestamp, else (none recorded) as measurements() found them, runs/ last
    return sorted(runs.items(), key=lambda kv: kv[1].summary.environment.get("timestamp") or "")


def movements(out: Path) -> list[Movement]:
    """Each point measured on more than one lease, each later lease against the earliest:
    bench.analysis.runs.speed_ratio (the runs measured apart, so drawn apart)."""
    from bench.analysis.runs import speed_ratio
    from bench.engines._history import measured_version

    def version(run) -> str | None:
        return measured_version(stated_environment(out, run.path, run.summary.environment))

    moved = []
    for point, by_lease in sorted(measurements(out).items(), key=lambda kv: kv[0].title):
        ordered = _runs_by_lease(by_lease)
        (first, base), *later = ordered
        for lease, run in later:
            versions = (version(base), version(run))
            changes = changes_between(point.engine, *versions)
            moved.append(Movement(point, first, lease, *speed_ratio(run, base), versions, changes))
    return moved


def across_note(a: str, b: str, moved: list[Movement]) -> str:
    """The words beside a comparison of runs of leases a and b: how far the points measured on
    both moved between them (nothing when a and b are one lease)."""
    if a == b:
        return ""
    both = [m for m in moved if {m.earlier, m.later} == {a, b}]
    if not both:
        return f"measured on different leases ({a}, {b}); no point was measured on both: how far they differ is unknown"
    shifts = "; ".join(f"{m.point.engine} batch {m.point.batch_size} ran {m.cell} as fast on {m.later}" for m in both)
    return f"measured on different leases ({a}, {b}), between which {shifts}"


def spread_line(moved: list[Movement]) -> str:
    """Whether the points moved alike, by the rule of docs/gpu-suites.md: apart when one
    movement's interval lies wholly above another's."""
    if len(moved) < 2:
        return ""
    low, high = min(m.ratio for m in moved), max(m.ratio for m in moved)
    apart = max(m.low for m in moved) > min(m.high for m in moved)
    if apart:
        return (f"They moved by between {low:.2f}x and {high:.2f}x, and some intervals lie apart: the points "
                "did not move alike, so no one factor carries one lease's figures to another's.")  # fmt: skip
    return (f"They moved by between {low:.2f}x and {high:.2f}x; their intervals overlap, so these points do not "
            "tell whether they moved alike.")  # fmt: skip


def lease_lines(out: Path, runs) -> list[str]:
    """The README's section on leases (nothing for a folder of one lease): which runs each
    measured, and the points measured on more than one with how far they moved."""
    import pandas as pd

    from bench.analysis.table import markdown

    lease = lease_of(out)
    by_lease: dict[str, list] = {}
    for run in runs:
        by_lease.setdefault(lease(run), []).append(run)
    moved = movements(out)
    if len(by_lease) < 2 and not moved:
        return []
    stated = provenance(out).get("leases", {})

    def first_timestamp(item) -> str:
        return min(r.summary.environment.get("timestamp") or "" for r in item[1])

    rows = []
    for name, members in sorted(by_lease.items(), key=first_timestamp):
        stamps = sorted(r.summary.environment.get("timestamp") or "" for r in members)
        rows.append({
            "lease": name,
            "runs in the tables": len(members),
            "measured (UTC)": f"{stamps[0][:16]} to {stamps[-1][11:16]}".replace("T", " "),
            "bench there": stated.get(name, {}).get("source") or "as each run recorded",
        })  # fmt: skip
    lines = [
        "## Leases",
        "",
        "The runs in the tables come from more than one lease of the GPU (one boot of one machine). "
        "An interval holds what moves between the passes of a run, not what moves between leases: a "
        "comparison of runs of two leases says so, with how far the points measured on both moved "
        '(docs/gpu-suites.md, "Leases").',
        "",
        markdown(pd.DataFrame(rows)),
    ]
    if moved:
        table = pd.DataFrame([{
            "point": m.point.title, "earlier lease": m.earlier, "later lease": m.later,
            "later vs earlier (RTFx ratio, 95% CI)": m.cell,
            "bench": " to ".join(v or "?" for v in m.versions) + (f" ({m.changes} changes)" if m.changes else ""),
        } for m in moved])  # fmt: skip
        lines += [
            "Points measured on more than one lease (the later run is in the tables; the earlier one is "
            f"kept under {EARLIER}/):",
            "",
            markdown(table),
        ]
        spread = spread_line(moved)
        lines += [spread, ""] if spread else []
        if any(m.changes for m in moved):
            lines += [
                "Where bench changed the engine, or how passes are timed, between the two runs (the bench "
                'column; the changes are listed under "Which bench measured this"), the ratio holds those '
                "changes as well as the lease's difference.",
                "",
            ]
    return lines
