"""The run record: summary.json and batches.parquet as typed data, and the row a table shows.

Every module that writes or reads a run folder goes through these types: a field renamed
here fails where it is used, not silently in a table. Reading is lenient with older folders
(fields they lack are None; fields this version does not know are kept in `extra` and
written back), so runs committed under results/ keep loading as the record grows.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.engines import current_name
from bench.host.busy import is_busy


@dataclass
class DatasetRecord:
    name: str
    source: str | None = None
    path: str | None = None
    config: str | None = None
    split: str | None = None
    limit: int | None = None
    language: str | None = None
    # 16 hex digits over every utterance's id and length (and the rejected ids): what was measured
    fingerprint: str | None = None


@dataclass
class Summary:
    """summary.json, field for field in the order it is written."""

    engine: str
    model: str
    weights: str
    scale: str
    dtype: str
    batch_size: int
    dataset: DatasetRecord
    patches: list[str] = field(default_factory=list)
    # every patch the engine had when measured (None: a run from before this was recorded)
    engine_patches: list[str] | None = None
    model_id: str | None = None
    seed: int | None = None
    device: str | None = None
    warmup_batches: int | None = None
    repeats: int | None = None
    length_matched: bool | None = None
    n_utterances: int = 0
    n_failed: int = 0
    failures: dict = field(default_factory=dict)
    out_of_memory_splits: list = field(default_factory=list)
    compiles_while_timed: int | None = None
    captures_while_timed: int | None = None
    # Dynamo's recompile limit reached after load: a shape then runs eager, and no compile is counted
    recompile_limit_hits: int | None = None
    shape_warmup_batches: int | None = None
    resumed: int = 0
    resume_sessions: list = field(default_factory=list)
    by_form: dict = field(default_factory=dict)
    long_form_threshold_seconds: float | None = None
    audio_seconds: float | None = None
    processing_seconds: float | None = None
    model_seconds: float | None = None
    rtf: float | None = None
    rtfx: float | None = None
    rtfx_ci: list[float] | None = None
    rtfx_ci_method: str | None = None
    repeat_processing_seconds: list[float] = field(default_factory=list)
    load_seconds: float | None = None
    cold_start_seconds: float | None = None
    cold_start_counted: bool | None = None
    latency_p50: float | None = None
    latency_p90: float | None = None
    latency_p99: float | None = None
    n_tokens: int | None = None
    decode_tokens_per_s: float | None = None
    decode_steps: int | None = None
    decode_step_seconds: float | None = None
    decode_phase: str | None = None
    peak_gpu_memory_bytes: int | None = None
    # a CPU run's process peak resident set (one engine in the process; a paired run has none)
    peak_resident_memory_bytes: int | None = None
    # the GPU board's energy over the timed passes per hour of audio they transcribed (NVML)
    energy_j_per_audio_hour: float | None = None
    energy_note: str | None = None  # why energy is null
    # what else used the machine while the run was timed, and whether that made it a busy host
    # (bench.host.busy; None off Linux and in runs from before bench read it)
    host_load: dict | None = None
    gpu_hourly_price: float | None = None  # run.gpu_hourly_price: what an hour of this machine costs
    cost_per_1000_audio_hours: float | None = None  # that price times the RTF, for 1,000 audio hours
    cost_per_1000_audio_hours_ci: list[float] | None = None  # from the RTFx 95% interval
    wer: float | None = None
    wer_details: dict | None = None
    wer_note: str | None = None
    n_empty_references: int | None = None
    n_missing_references: int | None = None
    reference_warnings: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    engine_report: dict = field(default_factory=dict)
    paired_with: list[str] = field(default_factory=list)
    profile: dict | None = None
    online: dict | None = None  # a bench.load run: the endpoint, its load, TTFT and latency intervals
    extra: dict[str, Any] = field(default_factory=dict)  # fields of a newer bench, kept as they were
    # read, never written: the engine's name in summary.json where it has been renamed since
    named_when_measured: str | None = None

    @property
    def hardware(self) -> str:
        return self.environment.get("hardware", "unknown hardware")

    @property
    def n_ok(self) -> int:
        return self.n_utterances - self.n_failed

    @classmethod
    def from_dict(cls, data: dict, strict: bool = False) -> Summary:
        """From summary.json's layout; `strict` (bench's own writer) refuses a field it does not know."""
        known = {f.name for f in dataclasses.fields(cls)} - {"extra", "named_when_measured"}
        if strict and set(data) - known:
            raise TypeError(f"not fields of a run summary: {sorted(set(data) - known)}")
        values = {k: v for k, v in data.items() if k in known}
        # a run measured before an engine's rename names it as it was then
        if current_name(values["engine"]) != values["engine"]:
            values["engine"], values["named_when_measured"] = current_name(values["engine"]), values["engine"]
        values["paired_with"] = [current_name(name) for name in values.get("paired_with") or []]
        values["dataset"] = DatasetRecord(**{k: v for k, v in data["dataset"].items() if k in _DATASET_FIELDS})
        return cls(**values, extra={k: v for k, v in data.items() if k not in known})

    def to_dict(self) -> dict:
        """As summary.json holds it, its fields in the order bench has always written them."""
        out = {name: getattr(self, name) for name in _WRITE_ORDER}
        out["dataset"] = dataclasses.asdict(self.dataset)
        return out | self.extra

    @classmethod
    def read(cls, folder: Path) -> Summary:
        return cls.from_dict(json.loads((folder / "summary.json").read_text()))


_DATASET_FIELDS = {f.name for f in dataclasses.fields(DatasetRecord)}
_WRITE_ORDER = (
    "engine", "patches", "engine_patches", "model", "model_id", "weights", "scale", "seed", "dtype", "device",
    "batch_size", "warmup_batches", "repeats", "length_matched", "dataset", "n_utterances", "n_failed", "failures",
    "out_of_memory_splits", "compiles_while_timed", "captures_while_timed", "recompile_limit_hits",
    "shape_warmup_batches", "resumed",
    "resume_sessions", "by_form", "long_form_threshold_seconds", "audio_seconds", "processing_seconds",
    "model_seconds", "rtf", "rtfx", "rtfx_ci", "rtfx_ci_method", "repeat_processing_seconds", "load_seconds",
    "cold_start_seconds", "cold_start_counted", "latency_p50", "latency_p90", "latency_p99", "n_tokens",
    "decode_tokens_per_s", "decode_steps", "decode_step_seconds", "decode_phase", "peak_gpu_memory_bytes",
    "peak_resident_memory_bytes",
    "energy_j_per_audio_hour", "energy_note", "host_load", "gpu_hourly_price", "cost_per_1000_audio_hours",
    "cost_per_1000_audio_hours_ci", "wer",
    "wer_details", "wer_note", "n_empty_references", "n_missing_references", "reference_warnings", "environment",
    "engine_report", "paired_with", "profile", "online",
)  # fmt: skip
assert set(_WRITE_ORDER) == {f.name for f in dataclasses.fields(Summary)} - {"extra", "named_when_measured"}


@dataclass
class BatchRow:
    """One timed batch of one pass: a row of batches.parquet, where phases become
    phase_<name>_s columns and engine counts (decode_steps, compiles, captures) columns of
    their own."""

    repeat: int
    batch: int
    n_utterances: int
    audio_s: float
    processing_s: float
    model_s: float
    n_tokens: int
    long_form: bool = False
    phases: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    energy_j: float | None = None  # the GPU board's energy over the batch (NVML); None without a counter
    host_use: dict[str, float | None] = field(default_factory=dict)  # bench.host.busy.COLUMNS, where read

    @property
    def rtf(self) -> float:
        return self.processing_s / self.audio_s

    def flat(self) -> dict:
        columns = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self)
            if f.name not in ("phases", "counts", "host_use")
        }  # fmt: skip
        columns["rtf"] = self.rtf
        columns = {k: columns[k] for k in _BATCH_ORDER}
        return columns | {f"phase_{name}_s": s for name, s in self.phases.items()} | self.counts | self.host_use


_BATCH_ORDER = (
    "repeat", "batch", "n_utterances", "audio_s", "processing_s", "model_s", "n_tokens", "rtf", "long_form", "energy_j"
)  # fmt: skip


def batch_frame(rows: list[BatchRow]) -> pd.DataFrame:
    return pd.DataFrame([row.flat() for row in rows])


def read_batches(folder: Path) -> pd.DataFrame:
    """A run's timed batches; an older folder without passes reads as one pass."""
    batches = pd.read_parquet(folder / "batches.parquet")
    if "repeat" not in batches:
        batches.insert(0, "repeat", 0)
    return batches


AUDIO_HOURS_PRICED = 1000  # cost is given per this many hours of audio


def cost_per_audio_hours(rtfx: float | None, hourly_price: float | None) -> float | None:
    """What transcribing AUDIO_HOURS_PRICED hours of audio costs at that speed: the machine
    runs 1/RTFx hours per audio hour, at hourly_price an hour."""
    if rtfx is None or hourly_price is None or not rtfx:
        return None
    return hourly_price * AUDIO_HOURS_PRICED / rtfx


def cost_interval(rtfx_ci: list[float] | None, hourly_price: float | None) -> list[float] | None:
    """The cost's 95% interval, from RTFx's (the faster end of RTFx is the cheaper end of cost)."""
    if not rtfx_ci or hourly_price is None or not min(rtfx_ci):
        return None
    return [cost_per_audio_hours(rtfx_ci[1], hourly_price), cost_per_audio_hours(rtfx_ci[0], hourly_price)]


def peak_memory_bytes(summary: Summary) -> int | None:
    """What tables show as peak memory: on a GPU torch's peak allocation on the device, on a
    CPU the process's peak resident set (which also holds Python, the libraries and the data)."""
    return summary.peak_gpu_memory_bytes or summary.peak_resident_memory_bytes


def table_row(summary: Summary, hourly_price: float | None = None) -> dict:
    """Everything a table may show about a run, under the names tables use. Each table picks
    its columns from this one row, so a figure is computed and named in one place.
    hourly_price prices the run at another rate than the one it was run with (bench.report)."""
    s = summary
    wer = s.wer_details or {}
    price = hourly_price if hourly_price is not None else s.gpu_hourly_price
    cost_ci = cost_interval(s.rtfx_ci, price)
    return {
        "engine": s.engine,
        "patches": patches_cell(s),
        "weights": s.weights,
        "model": f"{s.model} ({s.scale})",
        "dtype": s.dtype,
        "dataset": s.dataset.name,
        "batch": s.batch_size,
        "n": s.n_ok,
        "failed": s.n_failed,
        "audio s": s.audio_seconds,
        "WER": s.wer,
        "S/D/I": f"{wer['substitutions']}/{wer['deletions']}/{wer['insertions']}" if wer else "-",
        "RTFx": s.rtfx,
        "RTFx 95% CI": rtfx_ci_cell(s),
        "RTFx low": s.rtfx_ci[0] if s.rtfx_ci else None,  # the interval as numbers, for plots
        "RTFx high": s.rtfx_ci[1] if s.rtfx_ci else None,
        "p50 s": s.latency_p50,
        "p90 s": s.latency_p90,
        "p99 s": s.latency_p99,
        "tok/s": s.decode_tokens_per_s,
        "ms/step": 1e3 * s.decode_step_seconds if s.decode_step_seconds else None,
        "peak GiB": peak_memory_bytes(s) / 2**30 if peak_memory_bytes(s) else None,
        "load s": s.load_seconds,
        "cold start s": s.cold_start_seconds,
        "TTFT p50 s": (s.online or {}).get("ttft", {}).get("p50"),
        "J/audio h": s.energy_j_per_audio_hour,
        "cost/1k audio h": cost_per_audio_hours(s.rtfx, price),
        "cost/1k audio h 95% CI": f"[{cost_ci[0]:,.2f}, {cost_ci[1]:,.2f}]" if cost_ci else "-",
        "compiled while timed": compiled_while_timed_cell(s),
        "host": "busy" if is_busy(s) else None,  # measured while other processes used the machine
        "hardware": s.hardware,
    }


def timed_compile_problems(summary: Summary) -> list[str]:
    """What this run compiled or captured while a pass was timed, in words (empty: nothing, so
    its timings are of the engine's steady state). Reaching Dynamo's recompile limit counts too:
    past it a shape runs eager, a different engine, and no compile shows in the count."""
    problems = []
    if summary.compiles_while_timed:
        problems.append(f"compiled {summary.compiles_while_timed} graph(s)")
    if summary.captures_while_timed:
        problems.append(f"captured {summary.captures_while_timed} CUDA graph(s)")
    if summary.recompile_limit_hits:
        problems.append(f"reached Dynamo's recompile limit {summary.recompile_limit_hits} time(s) (a shape ran eager)")
    return problems


def compiled_while_timed_cell(summary: Summary) -> str | None:
    """The table cell: None (column left out) when nothing was compiled or captured while timed."""
    s = summary
    counts = [(s.compiles_while_timed, "compiles"), (s.captures_while_timed, "captures"),
              (s.recompile_limit_hits, "eager past limit")]  # fmt: skip
    cell = ", ".join(f"{n} {what}" for n, what in counts if n)
    return cell or None


def inert_patches(summary: Summary) -> list[str]:
    """Patches the engine was given but did not apply on this host (cuda_graph on a CPU): an
    engine reports each such patch as <patch>_active false."""
    report = summary.engine_report or {}
    return [p for p in summary.patches if report.get(f"{p}_active") is False]


def patches_cell(summary: Summary) -> str:
    """The patches as a table shows them: "all", or "all but" the ones off, where the run
    recorded the engine's whole list (summary.json keeps both lists), else each name; a patch
    the engine did not apply on this host is marked inert."""
    inert = inert_patches(summary)
    on, every = summary.patches, summary.engine_patches
    if not on:
        return "-"
    inert_note = f" ({', '.join(inert)} inert)" if inert else ""
    if every and set(on) <= set(every) and len(every) - len(on) < len(on):
        off = [p for p in every if p not in on]
        return ("all" if not off else f"all but {', '.join(off)}") + inert_note
    return ", ".join(f"{p} (inert)" if p in inert else p for p in on)


def energy_reasons(summaries: list[Summary]) -> list[str]:
    """Why runs have no energy figure, each reason once (a CPU run: no board counter)."""
    return sorted(
        {
            s.energy_note or "not recorded (a run from before bench read energy)"
            for s in summaries
            if s.energy_j_per_audio_hour is None
        }
    )


def rtfx_ci_cell(summary: Summary) -> str:
    """A run's RTFx 95% interval as a table cell."""
    ci = summary.rtfx_ci
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "-"
