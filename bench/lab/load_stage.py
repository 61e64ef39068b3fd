"""A reference plan's load stage: each faster path served by bench.serve and loaded by bench.load.

Offline RTFx says how fast an engine reads a dataset; a deployment also asks what latency it
gives under concurrent requests. A LoadPoint is one `python -m bench.load --serve ...` call:
the engine with the plan's random weights (scale, device, dtype), batches of up to the plan's
largest batch size, loaded at each concurrency level with the same number of requests, text
streamed (so time to first text is measured), on the clips with LibriSpeech's spread of
lengths (3 to 20 s). Its folder is `<out>/load/<engine>/`, a run folder per level (`c<level>/`,
as bench.load writes them) and the point's own point.json with its wall seconds.

A LoadPoint has what bench.lab.grid.measure and bench.lab.budget ask of a point (engine,
dataset, batch_size, label, title, folder, done, not_done_because, measure), so one ordered
plan holds both kinds.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from bench.lab.grid import POINT_FILE, Settings, model_override

LOAD_DATASET = "synthetic_librispeech_like"  # requests of 3 to 20 s, as a transcription service meets
LEVELS = (1, 16, 64)  # concurrency: one client alone, a busy server, more clients than one batch holds
REQUESTS_PER_CLIENT = 4  # requests per level: this many per client at the highest level


@dataclass(frozen=True)
class LoadPoint:
    engine: str
    levels: tuple[int, ...] = LEVELS
    batch_size: int = 32  # the server's largest batch (run.batch_size)
    dataset: str = LOAD_DATASET
    without = None  # what a grid point's ablation field says: nothing removed
    profile = False

    @property
    def label(self) -> str:
        return f"{self.engine} served"

    @property
    def title(self) -> str:
        levels = ", ".join(map(str, self.levels))
        return f"load: {self.engine} served (batches of up to {self.batch_size}) at concurrency {levels}"

    @property
    def requests(self) -> int:
        """Requests sent at every level."""
        return REQUESTS_PER_CLIENT * max(self.levels)

    def folder(self, out: Path) -> Path:
        return out / "load" / self.engine

    def level_folders(self, out: Path) -> list[Path]:
        return [self.folder(out) / f"c{level}" for level in self.levels]

    def done(self, out: Path) -> bool:
        return self.not_done_because(out) is None

    def not_done_because(self, out: Path) -> str | None:
        """Why the point is not fully measured (None: every level's run folder is there)."""
        if all((folder / "summary.json").exists() for folder in self.level_folders(out)):
            return None
        return "not run yet" if not self.folder(out).exists() else "measured only in part"

    def serve_overrides(self, settings: Settings) -> list[str]:
        """bench.serve's settings: the plan's weights, scale, device, dtype and model."""
        return [
            f"engine={self.engine}",
            "model.weights=random",
            f"model.scale={settings.scale}",
            f"device={settings.device}",
            f"dtype={settings.dtype}",
            f"run.batch_size={self.batch_size}",
            f"serve.max_queue={max(self.levels)}",  # every client of the highest level in flight at once
            *model_override(self.engine, settings),
        ]

    def load_arguments(self, folder: Path, settings: Settings) -> list[str]:
        """bench.load's command line for this point."""
        return [
            "--serve", shlex.join(self.serve_overrides(settings)),
            "--concurrency", ",".join(map(str, self.levels)),
            "--requests", str(self.requests),
            "--stream",
            "--out", str(folder),
            f"dataset={self.dataset}",
        ]  # fmt: skip

    def measure(self, folder: Path, settings: Settings) -> None:
        from bench.errors import BenchError
        from bench.online.load import main

        code = main(self.load_arguments(folder, settings))
        if code != 0:
            raise BenchError(f"bench.load exited with status {code} (its message is above)")


def load_points(engines: list[str], levels, batch_size: int) -> list[LoadPoint]:
    """One load point per faster path among the engines (Engine.STOCK: the paths bench tunes;
    their stock engines are not served), none without levels."""
    from bench.engines import faster_paths

    fast = faster_paths()
    return [LoadPoint(e, tuple(levels), batch_size) for e in engines if e in fast] if levels else []


def measured_load_points(out: Path) -> list[LoadPoint]:
    """The load points measured under out/load, from each one's point.json."""
    fields = {f.name for f in dataclasses.fields(LoadPoint)}
    points = []
    for record in sorted(out.glob(f"load/*/{POINT_FILE}")):
        recorded = json.loads(record.read_text())
        point = LoadPoint(**{k: tuple(v) if k == "levels" else v for k, v in recorded.items() if k in fields})
        if point.done(out):
            points.append(point)
    return points


def load_lines(out: Path, points: list[LoadPoint]) -> list[str]:
    """The reference README's section: each measured load point's table (bench.load's own)."""
    from bench.online.load_folder import load_table

    measured = [p for p in points if p.done(out)]
    if not measured:
        return []
    lines = ["## Under load: the faster paths served (bench.load --serve)", ""]
    for point in measured:
        table = load_table(point.level_folders(out)).split("\n", 1)[1]  # its own title one level down
        lines += [f"### {point.engine}, {point.requests} requests a level, {point.dataset}", "", table.strip(), ""]
    return lines
