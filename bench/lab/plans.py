"""Which runs the lab commands measure, chosen by what each engine declares (never by its name).

- the speed table: engines that declare the decoder a step streams (Engine.decoder_shape),
  for the model's family, and build random weights (Engine.RANDOM_WEIGHTS: the lab runs no
  others);
- the ablation: engines with switchable patches (Engine.PATCHES), each patch off alone, but
  not a patch that acts only on another device type (Engine.PATCH_DEVICE): off, it changes
  nothing there, and the run would spend device time to say so;
- profiles: engines that mark the placeholder merge as a phase of its own, one warm batch
  of 30 s clips at batch 1 (what the note that started bench claimed about), and each faster
  path at every batch size (one warm batch after its timed passes);
- ratios and the gate: engines that are a faster path of another (Engine.STOCK).

A reference plan is measured in order of value (value_ordered), so that whatever a time
budget cuts off is what matters least; it also serves each faster path under load
(bench.lab.load_stage).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from bench.engines import engine_class, engine_config_classes, engine_names, faster_paths  # noqa: F401
from bench.engines.base import Engine
from bench.lab.grid import Point

SYNTHETIC = "synthetic"  # the speed grid's dataset: 30 s clips, one full window each


def family(engine: str) -> str:
    return engine_config_classes()[engine].family


def profiled(engine: str, dataset: str, batch_size: int) -> bool:
    """Whether the point is profiled: on the synthetic clips, the engines that mark the
    placeholder merge at batch 1 (the note's claim), and each faster path at every batch size
    (where its decode step goes, against its ceiling and roofline)."""
    if dataset != SYNTHETIC:
        return False
    return ("merge" in engine_class(engine).PHASES and batch_size == 1) or engine in faster_paths()


def ablated(engine: str) -> bool:
    return bool(engine_class(engine).PATCHES)


def ablated_patches(engine: str, device_type: str) -> list[str]:
    """The patches the ablation switches off one at a time on this device type."""
    cls = engine_class(engine)
    return [p for p in cls.PATCHES if cls.PATCH_DEVICE.get(p, device_type) == device_type]


def plan_device_type(setting: str, out: Path | None) -> str:
    """The device type a plan runs on: the --device setting's; for "auto", the one the folder's
    runs recorded (a GPU folder written again on a CPU machine is still planned for its GPU);
    else the one "auto" picks here."""
    if setting != "auto":
        return torch.device(setting).type
    for summary in sorted(out.glob("runs/*/*/summary.json")) if out and out.is_dir() else []:
        device = json.loads(summary.read_text()).get("device")
        if device:
            return torch.device(device).type
    return "cuda" if torch.cuda.is_available() else "cpu"


def streams_a_decoder(engine: str) -> bool:
    """Whether the engine declares its decoder's shape (the speed table's bandwidth needs it)."""
    return engine_class(engine).decoder_shape.__func__ is not Engine.decoder_shape.__func__


def builds_random_weights(engine: str) -> bool:
    """Whether the engine runs seeded random weights: the lab's runs use no others."""
    return engine_class(engine).RANDOM_WEIGHTS


def speed_engines(model_family: str) -> list[str]:
    return [
        e for e in engine_names() if family(e) == model_family and streams_a_decoder(e) and builds_random_weights(e)
    ]


def speed_points(engines, batch_sizes, ablation_sizes, device_type: str) -> list[Point]:
    """Every engine at every batch size on the synthetic clips, then at each ablation batch
    size every engine with patches: all on, and each patch off alone (those acting on
    device_type)."""

    def point(engine, batch_size, without=None):
        return Point(SYNTHETIC, engine, batch_size, without, not without and profiled(engine, SYNTHETIC, batch_size))

    points = [point(e, b) for b in batch_sizes for e in engines]
    for b in ablation_sizes:
        for engine in (e for e in engines if ablated(e)):
            points += [p for p in [point(engine, b)] if p not in points]
            points += [point(engine, b, patch) for patch in ablated_patches(engine, device_type)]
    return points


def reference_points(engines, datasets, batch_sizes, ablation_sizes, device_type: str, load_levels=()) -> list:
    """Every engine on every dataset at every batch size; on the synthetic clips the ablation
    too; and with load levels, each faster path served and loaded (bench.lab.load_stage), its
    batches of up to the largest batch size."""
    from bench.lab.load_stage import load_points

    points = load_points(engines, load_levels, max(batch_sizes)) if batch_sizes else []
    for dataset in datasets:
        points += [Point(dataset, e, b, profile=profiled(e, dataset, b)) for b in batch_sizes for e in engines]
        if dataset == SYNTHETIC:
            points += [
                p
                for p in speed_points([e for e in engines if ablated(e)], (), ablation_sizes, device_type)
                if p not in points
            ]
    return points


# The reference plan's stages, most valuable first: a lease measures them in this order.
STAGES = (
    "verdict: every engine on the synthetic 30 s clips at the smallest and largest batch size, "
    "the profiles at batch 1 with them",
    "ablation: each patch off alone at the smallest ablation batch size",
    "load: each faster path served by bench.serve and loaded by bench.load at each concurrency level",
    "the rest: the other datasets, the batch sizes between, the other ablation batch sizes",
)


def stage_of(point, batch_sizes, ablation_sizes) -> int:
    """Which of STAGES a reference point (a Point, or a load point) belongs to (an index into it)."""
    if not isinstance(point, Point):
        return 2
    headline = {min(batch_sizes), max(batch_sizes)} if batch_sizes else set()
    if point.dataset == SYNTHETIC and point.without is None and point.batch_size in headline:
        return 0
    if ablation_sizes and point.dataset == SYNTHETIC and point.batch_size == min(ablation_sizes):
        return 1  # an ablation run, or its all-on partner where the grid has no such batch size
    return 3


def value_ordered(points: list[Point], batch_sizes, ablation_sizes) -> list[Point]:
    """The points by stage (STAGES), each in the plan's own order, except that the verdict
    measures the faster paths first, then the engines they are faster paths of, then the
    others: a verdict cut short still has each model on its fastest engine."""
    fast = faster_paths()

    def rank(point: Point) -> int:
        return 0 if point.engine in fast else 1 if point.engine in fast.values() else 2

    def key(point: Point) -> tuple[int, int]:
        stage = stage_of(point, batch_sizes, ablation_sizes)
        return stage, rank(point) if stage == 0 else 0

    return sorted(points, key=key)
