"""What measuring a run gives: a record per timed batch, and the run's measurement (load, cold
start and its parts, every batch, the transcripts, memory, what was warmed up or split),
which bench.pipeline.measure fills and bench.pipeline.results turns into rows and a summary."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.data import Failure
from bench.engines.base import Transcript


@dataclass
class BatchRecord:
    repeat: int
    index: int
    ids: list[str]
    audio_s: float
    processing_s: float
    model_s: float
    n_tokens: int
    phases: dict[str, float]
    counts: dict[str, int] = field(default_factory=dict)
    long_form: bool = False
    energy_j: float | None = None  # the GPU board's, where it has a counter
    # what else used the machine meanwhile (bench.host.busy.COLUMNS; empty off Linux and in older runs)
    host_use: dict[str, float | None] = field(default_factory=dict)


@dataclass
class Measurement:
    load_s: float
    cold_start_s: float | None
    cold_start_counted: bool  # no warm-up: the cold batch is also a timed batch
    batches: list[BatchRecord] = field(default_factory=list)
    transcripts: dict[str, Transcript] = field(default_factory=dict)  # from the first pass
    latency_s: dict[str, float] = field(default_factory=dict)  # its batch's time, first pass
    target_tokens: dict[str, int] | None = None
    failures: list[Failure] = field(default_factory=list)
    peak_memory_bytes: int | None = None
    # on a CPU: the process's peak resident set, load included (one engine per process only)
    peak_resident_bytes: int | None = None
    done: list[list[int]] = field(default_factory=list)  # [repeat, index] of finished batches
    oom_splits: list[dict] = field(default_factory=list)  # batches halved after running out of memory
    shape_warmups: int = 0  # untimed batches run for a batch shape no earlier call had run at
    # where a cold start goes: every warm-up batch's seconds, and within them (and any untimed
    # batch for a new shape) torch.compile's and this engine's CUDA graph captures (Engine.capture_seconds)
    warmup_s: float = 0.0
    compile_s: float = 0.0
    capture_s: float = 0.0
    recompile_limit_hits: int = 0  # Dynamo's recompile limit reached in one of this engine's calls

    resumed: list[dict] = field(default_factory=list)  # later sessions: load, cold start, batches done before
    energy_note: str | None = None  # why no batch has an energy figure (no GPU counter)
