"""python -m bench.reference: the four engines side by side on one GPU, as a results folder.

    python -m bench.reference --out results/reference/h100 --budget-minutes 8   # measure (resumable)
    python -m bench.report --reference results/reference/h100                    # the tables, again

With random full-size weights (speed depends on shapes, not values), every engine runs
on each dataset at each batch size with repeats; on the synthetic 30 s clips also the
voxtral_patched ablation (bench.speed's points), and voxtral_stock and voxtral_patched
are profiled at batch 1. Points are measured by bench.lab.grid into --out/runs/: the same
command again measures only what is missing, so the grid can be spread over several
calls of a GPU host. A call on another lease than the folder's runs measures one sentinel
point again first (bench.lab.sentinel), so comparisons across leases say how far it moved.
When every point is there it writes, from the run folders alone (`python -m bench.report
--reference DIR` does the same again and gives the same files):
README.md (hardware, command, tables, ratios with 95% CIs, profile findings), one
comparison CSV and RTFx-vs-batch plot per dataset, ratios.csv, speed/ablation tables
and profiles.md.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from bench.engines import accept_former_name, current_name, engine_names
from bench.lab import budget, leases, reference_folder, sentinel, speed
from bench.lab.carried_cache import carried
from bench.lab.folder import record_command, recorded_commands
from bench.lab.grid import Point, Settings, add_arguments, is_done, measure
from bench.lab.load_stage import LEVELS
from bench.lab.plans import STAGES, builds_random_weights, plan_device_type, reference_points, stage_of, value_ordered
from bench.lab.speed import INCOMPLETE

DATASETS = reference_folder.DATASETS  # measured in this order


def planned_points(commands: list[str], out: Path) -> list[Point]:
    """Every point the folder's bench.reference and bench.speed commands asked for, in order
    (out: the folder, whose runs say which device type they were planned for)."""
    plan: list[Point] = []
    for command in commands:
        words = shlex.split(command)
        if words[:3] == ["python", "-m", "bench.reference"]:
            plan += command_points(parse(words[3:], recorded=True), out)
        elif words[:3] == ["python", "-m", "bench.speed"]:
            plan += speed.planned_points(words[3:], out)
    return list(dict.fromkeys(plan))


def write_folder(out: Path) -> str:
    """The folder's README and tables (bench.lab.reference_folder), with what its commands planned."""
    return reference_folder.write_folder(out, planned_points(recorded_commands(out), out))


# -- the command ----------------------------------------------------------------------------
def parse(argv, recorded: bool = False):
    """The command line (recorded: one read back from the folder's commands.txt, whose former
    engine names are mapped without a word)."""
    parser = argparse.ArgumentParser(prog="python -m bench.reference", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="e.g. results/reference/h100")
    random_weights = [e for e in engine_names() if builds_random_weights(e)]  # the grid runs no others
    parser.add_argument(
        "--engines",
        nargs="+",
        default=random_weights,
        choices=random_weights,
        type=current_name if recorded else accept_former_name,
    )
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--ablation-batch-sizes", nargs="*", type=int, default=[1, 32])
    parser.add_argument(
        "--load-concurrency",
        nargs="*",
        type=int,
        default=list(LEVELS),
        help="concurrency levels of the load stage: each faster path served and loaded (none: no load stage)",
    )
    add_arguments(parser)
    return parser.parse_args(argv)


def command_points(args, out: Path) -> list[Point]:
    """The points one bench.reference command asks for, in the order they are measured."""
    device_type = plan_device_type(args.device, out)
    points = reference_points(
        args.engines, args.datasets, args.batch_sizes, args.ablation_batch_sizes, device_type, args.load_concurrency
    )
    return value_ordered(points, args.batch_sizes, args.ablation_batch_sizes)


def measure_sentinel_first(points: list, args) -> list:
    """The plan with the folder's sentinel point first, its run of another lease moved under
    earlier-leases/, when the folder holds runs of a lease other than this one
    (bench.lab.sentinel): so every lease has a point in common with the others."""
    from bench.pipeline.runner import resolve_device

    if not args.out.is_dir():
        return points
    here = leases.this_lease(resolve_device(args.device))
    again = sentinel.sentinel(args.out, points, here)
    if again is None:
        return points
    folder = again.folder(args.out)
    kept = leases.keep_earlier(args.out, folder) if leases.of_another_lease(args.out, folder, here) else None
    print(
        f"{args.out} holds runs of another lease than this one ({here}): the sentinel {again.title} is "
        f"measured again first{f' (its earlier run kept in {kept})' if kept else ''}, so that ratios across "
        "leases say how far it moved",
        flush=True,
    )
    return [again, *(p for p in points if p != again)]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    points = command_points(args, args.out)

    def stage(point: Point) -> int:
        return stage_of(point, args.batch_sizes, args.ablation_batch_sizes)

    points = measure_sentinel_first(points, args)
    known = budget.point_seconds(args.out) if args.out.is_dir() else {}
    print("\n".join(budget.plan_lines(points, args.out, known, list(STAGES), stage, args.budget_minutes)), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    record_command(args.out, "bench.reference", argv)
    started = budget.process_seconds()
    with carried(args.compile_cache) as cache_seconds:  # an earlier lease's compiles read back, this one's kept
        estimate = budget.folder_estimate(args.out)
        left = measure(points, args.out, Settings.from_args(args), args.budget_minutes, estimate)
        now = budget.point_seconds(args.out)  # with this call's points
        # measured by this call: new, or measured again (their seconds changed)
        measured = [p for p in points if is_done(p, args.out) and p in now and known.get(p) != now[p]]
        went = budget.where_minutes_went(measured, args.out, now, started)
        if went:
            print(went)
        # the ceilings of what was measured, even when the budget ran out first: seconds, on this lease
        began = time.perf_counter()
        speed.measure_ceilings(args.out, [p for p in points if isinstance(p, Point)])
        ceilings = time.perf_counter() - began
    after = {"ceilings": ceilings, "compile cache carried": cache_seconds[0]}
    if not left:
        began = time.perf_counter()
        print(write_folder(args.out))
        after["tables"] = time.perf_counter() - began
    parts = budget.minute_parts(measured, args.out, now) or {}
    budget.record_call(args.out, parts, started, after, len(measured))
    if left:
        print("\n".join(budget.left_lines(left, now, list(STAGES), stage)))
        return INCOMPLETE
    return 0
