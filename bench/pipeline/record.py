"""The run record: summary.json and batches.parquet as typed data (bench.pipeline.cells turns
a summary into the row a table shows).

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

from bench import stats
from bench.engines import current_name


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
    # the warm-up batches' seconds, and torch.compile's and the engine's CUDA graph captures within
    # them (bench.pipeline.measure; None in runs measured before they were recorded)
    warmup_seconds: float | None = None
    compile_seconds: float | None = None
    capture_seconds: float | None = None
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
        """A run's summary, its RTFx interval computed again from its raw batches by today's
        estimator (bench.stats.PASS_METHOD): every table shows one estimator, whichever bench
        measured the run (its summary.json keeps what that bench wrote). A bench.load run's
        interval is its throughput's, and is kept."""
        summary = cls.from_dict(json.loads((folder / "summary.json").read_text()))
        if summary.online is None and (folder / "batches.parquet").exists():
            batches = read_batches(folder)
            ci = stats.ratio_ci(batches.processing_s, batches.audio_s, batches.repeat) if len(batches) else None
            summary.rtfx_ci, summary.rtfx_ci_method = (list(ci) if ci else None), stats.PASS_METHOD
        return summary


_DATASET_FIELDS = {f.name for f in dataclasses.fields(DatasetRecord)}
_WRITE_ORDER = (
    "engine", "patches", "engine_patches", "model", "model_id", "weights", "scale", "seed", "dtype", "device",
    "batch_size", "warmup_batches", "repeats", "length_matched", "dataset", "n_utterances", "n_failed", "failures",
    "out_of_memory_splits", "compiles_while_timed", "captures_while_timed", "recompile_limit_hits",
    "shape_warmup_batches", "resumed",
    "resume_sessions", "by_form", "long_form_threshold_seconds", "audio_seconds", "processing_seconds",
    "model_seconds", "rtf", "rtfx", "rtfx_ci", "rtfx_ci_method", "repeat_processing_seconds", "load_seconds",
    "cold_start_seconds", "cold_start_counted", "warmup_seconds", "compile_seconds", "capture_seconds",
    "latency_p50", "latency_p90", "latency_p99", "n_tokens",
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
