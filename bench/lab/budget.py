"""A plan's minutes: what each point took, what the rest should take, and what is left.

bench.lab.grid writes each point's wall seconds into its point.json: start to finish in the
process (configuration, dataset, weights, warm-up with its compiles and captures, the timed
passes, the profile). A folder measured before that was recorded gives a lower bound from
each run's own timings instead: load + cold start + (warm-up batches + repeats) passes.

A point not measured yet is estimated from the points that were, by the first rule that has
any: the same engine at the same batch size on the same dataset (an ablation run against its
all-on run), the same engine at the same batch size, the same engine, any point; each the
longest such point, so an estimate errs long. A load point (bench.lab.load_stage: a server
started and loaded at each level) is estimated from load points only, a run from runs only.
With nothing measured yet there is no estimate: the first point's time gives one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from bench.lab.grid import POINT_FILE, Point, is_done, measured_points


def point_seconds(out: Path) -> dict[Point, tuple[float, bool]]:
    """Each measured point's seconds (a load point's too), and whether they are its wall time
    (else a lower bound)."""
    from bench.lab.load_stage import measured_load_points
    from bench.pipeline.record import Summary

    found = {}
    for point in [*measured_load_points(out), *measured_points(out)]:  # a load point always recorded its seconds
        folder = point.folder(out)
        recorded = json.loads((folder / POINT_FILE).read_text()) if (folder / POINT_FILE).exists() else {}
        if "seconds" in recorded:
            found[point] = (float(recorded["seconds"]), True)
            continue
        s = Summary.read(folder)
        passes = (s.warmup_batches or 0) + (s.repeats or 1)
        lower = (s.load_seconds or 0.0) + (s.cold_start_seconds or 0.0) + passes * (s.processing_seconds or 0.0)
        found[point] = (lower, False)
    return found


def estimate_seconds(point: Point, known: dict[Point, tuple[float, bool]]) -> tuple[float, bool] | None:
    """The point's own seconds where it was measured, else the rule of the module's docstring;
    with whether they are wall time (False: from a lower bound)."""
    if point in known:
        return known[point]
    known = {p: seconds for p, seconds in known.items() if type(p) is type(point)}  # a load point from load points
    rules = (
        lambda p: p.engine == point.engine and p.batch_size == point.batch_size and p.dataset == point.dataset,
        lambda p: p.engine == point.engine and p.batch_size == point.batch_size,
        lambda p: p.engine == point.engine,
        lambda p: True,
    )
    for rule in rules:
        matches = [known[p] for p in known if rule(p)]
        if matches:
            return max(matches)
    return None


def expected_seconds(point: Point, known: dict[Point, tuple[float, bool]]) -> float | None:
    """What grid.measure weighs against its budget before starting the point."""
    estimate = estimate_seconds(point, known)
    return None if estimate is None else estimate[0]


def folder_estimate(out: Path):
    """grid.measure's estimate function: each point's expected seconds from every point the
    folder holds when it is asked, so a call that began on an empty folder estimates its later
    points from its first ones."""
    return lambda point: expected_seconds(point, point_seconds(out))


def _minutes(estimate: tuple[float, bool] | None) -> str:
    if estimate is None:
        return "? min"
    return f"{estimate[0] / 60:.1f} min" + ("" if estimate[1] else " at least")


def _sum_line(points: list[Point], known) -> str:
    estimates = [e for e in (estimate_seconds(p, known) for p in points) if e is not None]
    if not estimates:
        return f"{len(points)} points, minutes unknown until a first run"
    total = _minutes((sum(e[0] for e in estimates), all(e[1] for e in estimates)))
    if len(estimates) == len(points):
        return f"{len(points)} points, {total}"
    unknown = len(points) - len(estimates)
    return f"{len(points)} points: {len(estimates)} at {total}, {unknown} unknown until a first run of their kind"


LOWER_BOUND_NOTE = (
    "(at least: from the runs' own timings, load + cold start + passes, where a folder's runs recorded no wall time)"
)


def plan_lines(plan: list[Point], out: Path, known, stages: list[str], stage_of, budget_minutes) -> list[str]:
    """The plan in the order it is measured, stage by stage: each point measured or not, with
    its minutes (measured, or estimated from `known`: point_seconds), and what is left against
    the budget."""
    todo = [p for p in plan if not is_done(p, out)]
    lines = [f"Plan for {out}: {len(plan)} points, {len(plan) - len(todo)} measured; in this order:"]
    for index, stage in enumerate(stages):
        points = [p for p in plan if stage_of(p) == index]
        if not points:
            continue
        lines.append(f"{index + 1}. {stage}")
        for p in points:
            state = "measured" if is_done(p, out) else "to do   "
            minutes = _minutes(estimate_seconds(p, known))
            lines.append(f"   {state}  {p.title}: {minutes}")
    left = f"To do: {_sum_line(todo, known)}" if todo else "Nothing left to measure"
    budget = f"; budget {budget_minutes:g} min: a point is started only if it should fit" if budget_minutes else ""
    lower = any(not exact for _, exact in known.values())
    return [*lines, left + budget + "." + (f" {LOWER_BOUND_NOTE}" if lower else "")]


def left_lines(left: list[Point], known, stages: list[str], stage_of) -> list[str]:
    """What a call left for the next one, by stage (estimated from `known`: point_seconds)."""
    if not left:
        return []
    lines = [f"Left for the next call (the same command again): {_sum_line(left, known)}:"]
    for index, stage in enumerate(stages):
        points = [p for p in left if stage_of(p) == index]
        if points:
            names = ", ".join(p.title for p in points)
            lines.append(f"{index + 1}. {stage.split(':')[0]}: {_sum_line(points, known)}: {names}")
    return lines


def process_seconds() -> float | None:
    """Seconds since this process started (from Linux's /proc; None where it cannot be read):
    asked before the first point, the start every call of a lease pays once (the interpreter,
    importing torch and the libraries, reading the plan)."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, the start in clock ticks
    except (OSError, ValueError, IndexError):
        return None


def minute_parts(points: list[Point], out: Path, known) -> dict[str, float] | None:
    """Seconds of the measured points' wall time by part, from their point.json and summaries:
    loading the engine (weights built or read), the warm-up batches split into torch.compile's
    compiles, the engine's own CUDA graph captures and the rest of them (a run measured before
    that split was recorded: its first warm-up batch, whole), the timed passes, the profiles,
    the load stage, and the rest (configuration, dataset, the run's tables and folder). None
    where no point recorded its wall time (`known`: point_seconds)."""
    from bench.pipeline.record import Summary

    walls = [(p, known[p][0]) for p in points if p in known and known[p][1]]
    if not walls:
        return None
    parts = {"engine load": 0.0, "compile": 0.0, "capture": 0.0, "warm-up, the rest": 0.0, "timed passes": 0.0,
             "profiles": 0.0}  # fmt: skip
    for point, seconds in walls:
        if not isinstance(point, Point):  # a load point: a server's start and its levels, one part
            parts["load stage"] = parts.get("load stage", 0.0) + seconds
            continue
        s = Summary.read(point.folder(out))
        parts["engine load"] += s.load_seconds or 0.0
        compiling, capturing = s.compile_seconds or 0.0, s.capture_seconds or 0.0
        parts["compile"] += compiling
        parts["capture"] += capturing
        warmup = s.warmup_seconds if s.warmup_seconds is not None else s.cold_start_seconds
        parts["warm-up, the rest"] += (warmup or 0.0) - compiling - capturing
        parts["timed passes"] += sum(s.repeat_processing_seconds) or (s.repeats or 1) * (s.processing_seconds or 0.0)
        parts["profiles"] += (s.profile or {}).get("seconds") or 0.0
    parts["the rest"] = sum(seconds for _, seconds in walls) - sum(parts.values())
    return parts


def where_minutes_went(points: list[Point], out: Path, known, started: float | None = None) -> str | None:
    """The measured points' wall minutes by part (minute_parts), and given `started`
    (process_seconds before the first point) the process's start."""
    parts = minute_parts(points, out, known)
    if parts is None:
        return None
    wall = sum(parts.values())
    shares = ", ".join(f"{name} {seconds / 60:.2f} ({100 * seconds / wall:.0f}%)" for name, seconds in parts.items())
    start = "" if started is None else f" Before the first point, the process's start: {started / 60:.2f} min."
    n = sum(1 for p in points if p in known and known[p][1])
    return f"Where the minutes of {n} point(s) went: {wall / 60:.2f} min in all: {shares}.{start}"


MINUTES_FILE = "minutes.csv"
TIMED_GOAL = 0.40  # the share of a call's minutes a lease should spend in timed passes (issue 49)


def record_call(out: Path, parts: dict[str, float], started: float | None, after: dict[str, float], points: int) -> str:
    """Add this call's minutes to the folder's minutes.csv (a row a call of bench.reference:
    the process's start, each part of its points, what came after them) and write minutes.md,
    the table with each call's share of timed passes against TIMED_GOAL; returns its text."""
    from datetime import UTC, datetime

    import pandas as pd

    from bench.analysis.table import markdown

    row = {"call (UTC)": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"), "points": points,
           "process start": started or 0.0, **parts, **after}  # fmt: skip
    path = out / MINUTES_FILE
    table = pd.DataFrame([row])
    if path.exists():  # a part this call had and an earlier one did not (a load stage) is a new column
        table = pd.concat([pd.read_csv(path), table], ignore_index=True)
    table.to_csv(path, index=False, float_format="%.2f")
    parts_columns = [c for c in table.columns if c not in ("call (UTC)", "points")]
    table[parts_columns] = table[parts_columns].fillna(0.0)  # a part a call did not have (a load stage)
    wall = table[parts_columns].sum(axis=1)
    shown = table[["call (UTC)", "points"]].assign(**{c: table[c] / 60 for c in parts_columns}, minutes=wall / 60)
    share = table.get("timed passes", 0.0) / wall
    shown["timed share"] = [f"{100 * x:.0f}% ({'meets' if x >= TIMED_GOAL else 'below'} the goal)" for x in share]
    lines = ["# Where each call's minutes went", "",
             f"Minutes per part, a row a call of bench.reference (seconds in {MINUTES_FILE}); the goal: timed passes "
             f"at least {100 * TIMED_GOAL:.0f}% of a call.", "", markdown(shown)]  # fmt: skip
    text = "\n".join(lines) + "\n"
    (out / "minutes.md").write_text(text)
    return text
