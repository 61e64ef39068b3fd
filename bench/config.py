"""Typed configuration: one dataclass per axis, registered in Hydra's ConfigStore.

The YAML files under conf/ name these dataclasses as their schema, so a typo in an
override (``run.batchsize=8``) fails at composition instead of being ignored.
Engines add their own fields by subclassing ``EngineConfig`` in their module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent  # the checkout (its results/, its git state), when bench runs from one
# the Hydra configs: the top-level conf/, which bench/conf links to, so that a wheel holds them
# (package data) and an installed bench finds them as a checkout does
CONF_DIR = Path(__file__).parent / "conf"


# Settings that are a choice: Hydra refuses any other value when it builds the config. Each
# member equals its name as a string, so code and files read them as plain strings.
class Weights(StrEnum):
    pretrained = "pretrained"
    random = "random"


class Scale(StrEnum):
    full = "full"
    tiny = "tiny"  # the same code paths with small dimensions: CPU tests


class DType(StrEnum):
    auto = "auto"  # bfloat16 on CUDA, float32 on the CPU
    bfloat16 = "bfloat16"
    float16 = "float16"
    float32 = "float32"


class Source(StrEnum):
    hub = "hub"  # any `datasets` path, on the Hub or a local folder in its layout
    synthetic = "synthetic"


class OnError(StrEnum):
    fail = "fail"
    skip = "skip"


@dataclass
class ModelConfig:
    name: str = MISSING  # short key, the file name under conf/model/
    family: str = MISSING  # which engines can run it: "whisper" or "voxtral"
    id: str = MISSING  # Hub id, openai-whisper model name, or a local path
    weights: Weights = Weights.pretrained
    scale: Scale = Scale.full
    seed: int = 0  # random weights are seeded: same model + seed = same weights
    hub: bool = True  # pretrained weights come from the Hugging Face Hub (false: the engine's own download)
    # The checkpoint's architecture (its config.json), so random weights need no download,
    # and what model.scale=tiny changes in it (same code paths, small dimensions).
    architecture: Any = None
    tiny: Any = None


@dataclass
class EngineConfig:
    name: str = MISSING
    family: str = MISSING  # model family this engine runs
    patches: list[str] = field(default_factory=list)
    max_new_tokens: int = MISSING  # each engine's Config says how many, and per what


@dataclass
class DatasetConfig:
    name: str = MISSING
    source: Source = Source.hub
    path: str = ""
    config: str | None = None
    split: str = "test"
    audio_column: str = "audio"
    text_column: str = "text"
    id_column: str | None = None
    language: str = "en"
    streaming: bool = False
    sort_by_duration: bool = True  # longest first: OOM shows at once, batches pad little
    # synthetic source only (dataset=synthetic is these defaults)
    n_clips: int = 64
    min_seconds: float = 30.0
    max_seconds: float = 30.0
    words_per_second: float = 2.7  # LibriSpeech read speech averages about 2.7
    seed: int = 0


@dataclass
class RunConfig:
    batch_size: int = 1
    limit: int | None = None
    warmup_batches: int = 1
    repeats: int = 1
    on_error: OnError = OnError.fail
    resume: bool = False
    progress: bool = True  # progress bars on a terminal (never into a redirected log)
    # other libraries' INFO lines and progress bars (mistral_common's tokenizer, datasets'
    # loading), which interleave with bench's own output: shown only when true
    verbose: bool = False
    # engines measured beside this one, batch by batch in turns, on the same model (a paired
    # measurement for same-run ratios); each gets a folder under <run dir>/paired/<engine>
    paired_with: list[str] = field(default_factory=list)
    # what an hour of the measuring machine costs (e.g. a cloud GPU's hourly rate, in your
    # currency): turns RTF into cost per 1,000 audio hours; null leaves cost out
    gpu_hourly_price: float | None = None


@dataclass
class ServeConfig:
    """python -m bench.serve: the HTTP server around an engine (run.batch_size caps a batch)."""

    host: str = "127.0.0.1"
    port: int = 8000
    max_wait_ms: float = 10.0  # how long the first request of a batch waits for others to join it
    max_queue: int = 64  # requests accepted and not yet answered; more are refused (503, Retry-After)
    max_upload_mb: float = 25.0  # larger uploads are refused (413), as OpenAI's API does
    # longer audio is refused (413), read from the file's header before decoding where it has
    # one: a small file can hold hours of silence, and a request holds memory (the decoded
    # samples, every window's encoding) in proportion to its length. 30 minutes by default
    max_audio_seconds: float = 1800.0
    # random weights emit random tokens with no end: decode this many tokens per second of
    # audio (LibriSpeech reads at about 2.7 words, some 3.5 tokens, a second)
    random_tokens_per_second: float = 3.5
    # other names a client may send as `model` for the one model served (OpenAI's clients send
    # whisper-1 by default); None: whisper-1 for a Whisper engine, none for another
    model_aliases: list[str] | None = None
    # slow clients (bench.online.limits): a request's headers must be in within header_timeout_s
    # of the connection opening, its body within body_timeout_s of them (408 past either); a
    # stop (SIGINT, SIGTERM) answers what was accepted for at most stop_timeout_s
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    stop_timeout_s: float = 60.0


@dataclass
class BenchConfig:
    model: ModelConfig = MISSING
    engine: EngineConfig = MISSING
    dataset: DatasetConfig = MISSING
    run: RunConfig = field(default_factory=RunConfig)
    device: str = "auto"  # auto = cuda when available, else cpu; or cpu, cuda, cuda:1...
    dtype: DType = DType.auto
    profile: bool = False
    serve: ServeConfig = field(default_factory=ServeConfig)


def _bench_data(name: str) -> str:
    """${bench_data:sample} -> the folder of a dataset shipped inside the package."""
    return str(PACKAGE_DIR / "data" / name)


def register_configs() -> None:
    from bench.engines import engine_config_classes

    if not OmegaConf.has_resolver("bench_data"):
        OmegaConf.register_new_resolver("bench_data", _bench_data)
    cs = ConfigStore.instance()
    cs.store(name="bench_schema", node=BenchConfig)
    cs.store(group="model", name="model_schema", node=ModelConfig)
    cs.store(group="dataset", name="dataset_schema", node=DatasetConfig)
    for name, config_class in engine_config_classes().items():
        cs.store(group="engine", name=f"{name}_schema", node=config_class)
