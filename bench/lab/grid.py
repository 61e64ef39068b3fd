"""A grid of runs measured into one folder tree, resumable and inside a time budget.

bench.speed and bench.reference are both such grids: points (dataset, engine, batch size,
a patch removed, profiled or not), each measured by the same runner as `python -m bench`
into `<out>/runs/<dataset>/<label>_b<batch>/`. A point whose folder holds a summary.json
is kept, so the same command run again (on the next lease of a GPU host, with the folder
carried over) measures only what is missing; a folder left half-measured is measured
again from scratch, since timings from two machines or two sessions must not mix; so is a
finished run of older code (bench changed its engine, or timing, since: bench.engines._history).
A finished run of another lease measured again is kept (bench.lab.leases: how far leases differ).
`<out>/device.json` records the hardware and its measured copy bandwidth once.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from bench.engines import current_name, engine_class, engine_config_classes
from bench.lab.folder import device_record, measured_as
from bench.pipeline.record import Summary

POINT_FILE = "point.json"  # in each measured folder: the point it measured, and its wall seconds


@dataclass(frozen=True)
class Point:
    dataset: str
    engine: str
    batch_size: int
    without: str | None = None  # one of the engine's patches switched off (the ablation)
    profile: bool = False

    @property
    def label(self) -> str:
        return f"{self.engine}_without_{self.without}" if self.without else self.engine

    @property
    def title(self) -> str:
        return f"{self.dataset} {self.label} batch {self.batch_size}"

    def folder(self, out: Path) -> Path:
        return measured_as(out / "runs" / self.dataset / f"{self.label}_b{self.batch_size}")

    def done(self, out: Path) -> bool:
        """Whether the point is fully measured (with its profile, when asked for)."""
        return self.not_done_because(out) is None

    def not_done_because(self, out: Path) -> str | None:
        """Why the point is not fully measured (None: it is)."""
        folder = self.folder(out)
        if not (folder / "summary.json").exists():
            return "not run yet" if not folder.exists() else "measured only in part"
        older = _older_code(out, folder, self.engine)
        if older:
            return older
        if not self.profile:
            return None
        if not (folder / "profile.md").exists():
            return "its profile is missing"
        if "invariants_broken" not in (json.loads((folder / "summary.json").read_text()).get("profile") or {}):
            # the first H200 profiles broke them unseen (bench.pipeline.trace.invariant_violations)
            return "its profile was taken before the phase table was checked on its trace"
        return None

    def measure(self, folder: Path, settings: Settings) -> None:
        """One run, by the runner `python -m bench` uses, into folder."""
        from bench.pipeline.runner import run

        run(point_config(self, settings), folder)


def _older_code(out: Path, folder: Path, engine: str) -> str | None:
    """Why a finished run no longer measures today's engine: bench changed the engine, or how
    passes are timed, since the version that measured it (None: it did not)."""
    from bench import __version__
    from bench.engines._history import changes_to, measured_version
    from bench.lab.leases import recorded_environment, stated_environment

    version = measured_version(stated_environment(out, folder, recorded_environment(folder)))
    changes = changes_to(engine, version, __version__)
    if not changes:
        return None
    return f"measured by bench {version}, before {len(changes)} change(s) to {engine} or to timing since"


POINT_FIELDS = {f.name for f in dataclasses.fields(Point)}


@dataclass
class Settings:
    """How every point is measured; clips per point = max(min_clips, 2 x batch size)."""

    scale: str = "full"
    model: str | None = None  # for engines of this model's family (None: each engine's own default)
    repeats: int = 5  # passes per run: two runs of 5 passes 6.5% apart tell 10% (docs/statistics.md)
    min_clips: int = 8
    clip_seconds: float | None = None  # the synthetic dataset's clip length (its YAML's when None)
    device: str = "auto"
    dtype: str = "auto"
    quiet: bool = False
    compile_cache: Path | None = None  # Inductor's on-disk cache (None: where torch puts it)

    def clips(self, batch_size: int) -> int:
        return max(self.min_clips, 2 * batch_size)

    @classmethod
    def from_args(cls, args, **more) -> Settings:
        """From the options add_arguments declared (plus a command's own, as keywords)."""
        return cls(
            scale=args.scale,
            repeats=args.repeats,
            min_clips=args.min_clips,
            device=args.device,
            dtype=args.dtype,
            quiet=args.quiet,
            compile_cache=args.compile_cache,
            **more,
        )


def add_arguments(parser) -> None:
    """The options every grid command shares: how each point is measured, and the time budget."""
    parser.add_argument("--scale", default="full", choices=["full", "tiny"])
    parser.add_argument("--min-clips", type=int, default=8, help="clips per run: max(this, 2 x batch size)")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per run (docs/statistics.md)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--budget-minutes", type=float, default=None, help="start no point that would not fit")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument(
        "--compile-cache",
        type=Path,
        default=None,
        help="Inductor's on-disk cache of compiled graphs: one folder kept across calls (and carried "
        "between GPU leases) reads back what an earlier call compiled (default: torch's, "
        "$TORCHINDUCTOR_CACHE_DIR or /tmp/torchinductor_<user>)",
    )


def use_compile_cache(directory: Path | None) -> str:
    """Point Inductor's on-disk cache at directory (None: leave it where torch puts it), before
    anything compiles; returns a line saying where it is, how many graphs it holds and its size
    (what a lease must carry to the next)."""
    import os

    if directory is not None:  # before Inductor is imported: it makes the folder it is told of then
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(directory.resolve())
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    from bench.engines._fast.compiled_generate import inductor_cached_graphs

    folder = Path(cache_dir())
    mib = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20
    return f"compile cache: {folder}, {inductor_cached_graphs()} graph(s) in it ({mib:.1f} MiB)"


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from bench.config import CONF_DIR, register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


def model_family(model: str) -> str:
    from omegaconf import OmegaConf

    from bench.config import CONF_DIR

    return OmegaConf.load(CONF_DIR / "model" / f"{model}.yaml").family


def model_override(engine: str, settings: Settings) -> list[str]:
    """model= for an engine of the settings' model's family (none: the engine's own default)."""
    if settings.model and model_family(settings.model) == engine_config_classes()[engine].family:
        return [f"model={settings.model}"]
    return []


def patches_without(engine: str, patch: str) -> str:
    """The override that runs the engine with every patch on but `patch` (an ablation run)."""
    return f"engine.patches=[{','.join(p for p in engine_class(engine).PATCHES if p != patch)}]"


def point_config(point: Point, settings: Settings):
    overrides = [
        f"engine={point.engine}",
        "model.weights=random",
        f"model.scale={settings.scale}",
        f"dataset={point.dataset}",
        f"run.batch_size={point.batch_size}",
        f"run.repeats={settings.repeats}",
        "run.warmup_batches=1",
        f"run.progress={str(not settings.quiet).lower()}",
        f"device={settings.device}",
        f"dtype={settings.dtype}",
        f"profile={str(point.profile).lower()}",
    ]
    overrides += model_override(point.engine, settings)
    if point.without:
        overrides.append(patches_without(point.engine, point.without))
    cfg = compose(overrides)
    clips = settings.clips(point.batch_size)
    if cfg.dataset.source == "synthetic":
        cfg.dataset.n_clips = clips
        if settings.clip_seconds is not None and point.dataset == "synthetic":
            cfg.dataset.min_seconds = cfg.dataset.max_seconds = settings.clip_seconds
    else:
        cfg.run.limit = clips  # the first rows of a Hub dataset (a shipped one has as many as it has)
    return cfg


def is_done(point, out: Path) -> bool:
    """Whether the point (a Point, or another kind a plan holds: bench.lab.load_stage) is fully measured."""
    return point.done(out)


def summary_if_done(point: Point, out: Path) -> Summary | None:
    """The point's run, where it finished (for the tables: a profile to be taken again does not
    take its run out of them)."""
    folder = point.folder(out)
    return Summary.read(folder) if (folder / "summary.json").exists() else None


def measured_points(out: Path) -> list[Point]:
    """The points fully measured under out/runs: each folder's point.json, or for a folder
    measured before those were written, the point its name spells."""
    points = []
    for summary in sorted((out / "runs").glob("*/*/summary.json")):
        folder = summary.parent
        if (folder / POINT_FILE).exists():
            point = json.loads((folder / POINT_FILE).read_text())  # with the seconds it took (bench.lab.budget)
            fields = {k: v for k, v in point.items() if k in POINT_FIELDS}
            points.append(Point(**fields | {"engine": current_name(point["engine"])}))
            continue
        label, _, batch = folder.name.rpartition("_b")
        engine, _, without = label.partition("_without_")
        profile = (folder / "profile.md").exists()
        points.append(Point(folder.parent.name, current_name(engine), int(batch), without or None, profile))
    return points


def measure(
    points: list[Point], out: Path, settings: Settings, budget_minutes: float | None = None, estimate=None
) -> list[Point]:
    """Measure the points not measured yet; returns the ones still missing, in order: left
    for lack of time, or failed (the error is kept in the point's folder as error.txt and
    the grid goes on: one engine's failure must not cost an unattended call the others).

    The first point always starts. A later one is started only if the time spent so far plus
    what it should take fits the budget: the longest point of the same kind (a run, or a load
    point) and engine measured in this call, else estimate(point) (bench.lab.budget, from the
    folder's earlier points; None, a kind never measured: it waits to start a call, where the
    whole budget is before it), else, without an estimate function, the longest point of this
    call. Each point's seconds go into its point.json. The folder's device.json is written
    first, if it is not there yet. A finished run measured again (its profile is to be taken
    again) is kept under earlier-leases/ when another lease measured it (bench.lab.leases)."""
    from bench.lab import leases
    from bench.pipeline.runner import resolve_device

    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(settings.device)
    device_record(out, device)
    here = leases.this_lease(device)
    print(use_compile_cache(settings.compile_cache), flush=True)
    start = time.perf_counter()
    took: dict[tuple, float] = {}  # the longest point of each kind and engine measured in this call
    failed: list[Point] = []
    todo = [p for p in points if not is_done(p, out)]
    if len(todo) < len(points):
        print(f"{len(points) - len(todo)} of {len(points)} points already measured in {out}: kept")
    for i, point in enumerate(todo):
        if budget_minutes is not None and took:
            guess = took.get((type(point), point.engine)) or (estimate(point) if estimate else max(took.values()))
            if guess is None or time.perf_counter() - start + guess > 60 * budget_minutes:
                left = todo[i:]
                stop = (
                    f"{point.title} has no estimate until a first run of its kind, so it waits to start a call"
                    if guess is None
                    else f"time budget of {budget_minutes:g} min reached"
                )
                print(f"{stop}: {len(left)} points left; run the same command again (with this folder) to measure them")
                return failed + left
        folder = point.folder(out)
        if folder.exists():
            why = point.not_done_because(out)
            if leases.of_another_lease(out, folder, here):  # evidence of how far leases differ: kept
                kept = leases.keep_earlier(out, folder)
                print(f"{folder}: {why}; its run, of another lease, is kept in {kept}; measuring the point again")
            else:
                print(f"{folder}: {why}; measuring it again from scratch")
                shutil.rmtree(folder)
        print(f"[{i + 1}/{len(todo)}] {point.title}", flush=True)
        began = time.perf_counter()
        try:
            point.measure(folder, settings)
            seconds = round(time.perf_counter() - began, 1)
            (folder / POINT_FILE).write_text(json.dumps(dataclasses.asdict(point) | {"seconds": seconds}) + "\n")
        except Exception as err:  # noqa: BLE001 - kept with its traceback, reported below
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "error.txt").write_text(traceback.format_exc())
            print(
                f"  failed: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''} "
                f"(traceback in {folder / 'error.txt'})",
                flush=True,
            )
            failed.append(point)
        kind = (type(point), point.engine)
        took[kind] = max(took.get(kind, 0.0), time.perf_counter() - began)
    if failed:
        print(f"{len(failed)} points failed: " + ", ".join(f"{p.dataset}/{p.folder(out).name}" for p in failed))
    return failed
