"""What every engine provides. An engine turns raw 16 kHz waveforms into text.

Everything an engine does inside ``transcribe`` is inside the timed region: feature
extraction, host-to-device copy, encoder, prefill, decode, detokenisation. Engines mark
those steps with ``clock.phase(name)`` so model-only time and profiles line up across
engines.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from bench.config import EngineConfig, ModelConfig
from bench.data.audio import SAMPLE_RATE
from bench.data.streamed_audio import StreamedWindows
from bench.errors import BenchError
from bench.pipeline.clock import Clock


@dataclass
class Transcript:
    text: str
    n_tokens: int  # tokens generated, end-of-text excluded
    tokens: list[int] = field(default_factory=list)  # the generated ids, to compare engines


@dataclass(frozen=True)
class DecoderShape:
    """The dimensions of a decoder that set the bytes one decode step must read."""

    layers: int
    hidden: int
    inner: int  # the MLP's width
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    gated_mlp: bool = True  # gate, up and down (3 matrices) or up and down (2)
    norms_per_layer: int = 2
    cross_positions: int = 0  # encoder positions each layer's cross-attention reads (0: none)

    def weight_values(self) -> int:
        """Every decoder layer's matrices and norms a step reads, the final norm and the output
        projection. A cross-attention reads its q and o each step; its k and v are computed once
        per batch, so their weights are not read again."""
        attention = self.hidden * self.heads * self.head_dim + self.heads * self.head_dim * self.hidden  # q, o
        per_layer = (
            attention
            + 2 * self.hidden * self.kv_heads * self.head_dim  # k, v
            + (attention if self.cross_positions else 0)
            + (3 if self.gated_mlp else 2) * self.hidden * self.inner
            + self.norms_per_layer * self.hidden
        )
        return self.layers * per_layer + self.hidden + self.vocab * self.hidden

    def self_kv_values(self, rows: float, context: float) -> float:
        """The self-attention keys and values a step reads at `context` positions in use."""
        return self.layers * 2 * self.kv_heads * self.head_dim * context * rows

    def cross_kv_values(self, rows: float) -> float:
        """The cross-attention's keys and values over the encoder's positions (0: none)."""
        return self.layers * 2 * self.kv_heads * self.head_dim * self.cross_positions * rows

    def kv_values(self, rows: float, context: float) -> float:
        """The keys and values a step attends, at this many rows: the self-attention cache at
        `context` positions, and the cross-attention's over the encoder's positions."""
        return self.self_kv_values(rows, context) + self.cross_kv_values(rows)

    def step_bytes(self, rows: float, context: float, bytes_per_value: int) -> float:
        """Bytes a decode step must read: the decoder's weights once, and the keys and values in
        use (by the content, not by what a static cache allocated)."""
        return (self.weight_values() + self.kv_values(rows, context)) * bytes_per_value


class Engine(ABC):
    """An engine turns 16 kHz waveforms into text. Besides doing it (load, transcribe), an
    engine says what it is, so the commands that plan and read runs (speed, reference, the
    gate, profiles) ask it rather than test its name. Class attributes, readable unloaded:"""

    PATCHES: dict[str, str] = {}  # switchable patches, each ablated alone: name -> what it changes
    PATCH_DEVICE: dict[str, str] = {}  # patches that act on one device type only (inert elsewhere): name -> type
    STOCK: str | None = None  # the engine this one is a faster path of (same weights, same tokens)
    PHASES: tuple[str, ...] = ()  # the phases it marks inside the timed region
    COMPILES: bool = False  # its cold start includes a torch.compile
    # it builds seeded random weights from the model's architecture, so it runs with no download
    # (the speed grid, the reference runs and the tests at tiny scale need this)
    RANDOM_WEIGHTS: bool = True
    # An engine that compiles or captures per batch shape pads a batch's rows. None: to the most
    # rows its plan holds (one shape for an offline run); a list: to the smallest of these sizes
    # that holds the batch (bench.serve sets powers of two and warms each, so a lone request
    # does not pay for run.batch_size rows)
    row_buckets: list[int] | None = None
    # the most clips over 30 s that bench.serve puts in one batch (None: run.batch_size). An
    # engine that decodes a long clip's windows one clip at a time gains nothing from a batch
    # of them, and the batch would hold each clip until the last one's windows are done
    long_form_rows: int | None = None
    # it reads a clip over 30 s one 30 s window at a time (split_into_windows), so bench.serve may
    # hand it such a clip as its bytes, decoded window by window (bench.data.streamed_audio)
    windows_long_clips: bool = False

    @classmethod
    def decoder_shape(cls, architecture: dict) -> DecoderShape | None:
        """The decoder a decode step streams, from the model's architecture (None: not declared)."""
        return None

    @classmethod
    def context_tokens(cls, samples: int, language: str = "en") -> int | None:
        """Positions in the decoder's context when it starts decoding a clip of this length."""
        return None

    @classmethod
    def audio_placeholders(cls, samples: int) -> int | None:
        """Audio placeholder tokens merged into the prompt for a clip (None: the engine has none)."""
        return None

    def __init__(
        self,
        engine: EngineConfig,
        model: ModelConfig,
        device: torch.device,
        dtype: torch.dtype,
        language: str,
    ):
        if model.family != engine.family:
            raise BenchError(
                f"engine={engine.name} runs {engine.family} models, but model={model.name} is a "
                f"{model.family} model; pick a {engine.family} model or drop the model= override"
            )
        if model.weights not in ("pretrained", "random"):
            raise BenchError(f"model.weights={model.weights!r}: use pretrained or random")
        if model.scale not in ("full", "tiny"):
            raise BenchError(f"model.scale={model.scale!r}: use full or tiny")
        self.engine_cfg = engine
        self.model_cfg = model
        self.device = device
        self.dtype = dtype
        self.language = language

    @property
    def precision(self) -> str:
        """The number type the run records as its dtype (and tables show): the one the model
        computes in, which an engine with its own setting for it (faster_whisper's
        engine.compute_type) reports instead of the run's dtype."""
        return str(self.dtype).removeprefix("torch.")

    @property
    def architecture(self) -> dict:
        """The model's architecture from its YAML, with the tiny overrides at model.scale=tiny."""
        from omegaconf import OmegaConf

        if self.model_cfg.architecture is None:
            raise BenchError(f"model={self.model_cfg.name} has no architecture: random weights need one")
        arch = OmegaConf.create(OmegaConf.to_container(self.model_cfg.architecture))
        if self.model_cfg.scale == "tiny":
            arch = OmegaConf.merge(arch, self.model_cfg.tiny or {})
        return OmegaConf.to_container(arch)

    @property
    def length_matched(self) -> bool:
        """Random weights emit random tokens, so decode as many as the reference needs."""
        return self.model_cfg.weights == "random"

    @abstractmethod
    def load(self) -> None:
        """Build or load the model on the device; timed as load time."""

    @abstractmethod
    def count_target_tokens(self, reference: str) -> int:
        """Tokens this engine's own tokenizer needs to write the reference."""

    @abstractmethod
    def transcribe(self, audios: list[np.ndarray], target_tokens: list[int] | None, clock: Clock) -> list[Transcript]:
        """One batch. ``target_tokens`` is given in length-matched mode only."""

    def transcribe_steps(
        self, audios: list[np.ndarray], target_tokens: list[int] | None, clock: Clock
    ) -> Generator[None, None, list[Transcript]]:
        """transcribe, as a generator that pauses (yields) between units of work and returns the
        transcripts. bench.serve steps it and runs other batches in the pauses, so a long clip
        does not hold short requests back. By default one unit: the whole batch."""
        return self.transcribe(audios, target_tokens, clock)
        yield  # never reached: it makes this function a generator

    # -- streaming (bench.serve): engines that decode token by token say so ----------------------
    def streams(self, lengths: list[int]) -> bool:
        """Whether a batch of clips of these lengths can report its tokens step by step, one per
        row (stream_to), as it decodes. Engines that decode elsewhere (a C++ runtime) cannot."""
        return False

    def stream_to(self, listener: Callable[[torch.Tensor], None] | None) -> None:
        """Call listener(tokens) with each decode step's token per row (None: stop)."""
        raise BenchError(f"engine={self.engine_cfg.name} does not stream tokens")

    def text_of(self, token_ids: list[int]) -> str:
        """The text of tokens decoded so far for one row, up to its end of sequence."""
        raise BenchError(f"engine={self.engine_cfg.name} does not stream tokens")

    def graph_captures(self) -> int:
        """CUDA graphs this engine has captured so far (measure checks none is captured while timing)."""
        return 0

    def capture_seconds(self) -> float:
        """Seconds this engine has spent capturing CUDA graphs of its own so far, compiles inside
        excluded (counted apart: compile_seconds). Graphs recorded inside a compiled function
        (torch.compile's reduce-overhead mode) are not told apart from its other work: 0 there."""
        return 0.0

    def plan(self, batches: list[list[int]]) -> None:
        """Told, before the warm-up, every batch the run will time (each clip's length in
        samples), so an engine that compiles or captures per shape can fix its shapes for
        the run (pad to the largest, size a cache for the longest). Most engines need nothing."""
        return None

    def longest_clip(self) -> tuple[float, str] | None:
        """The longest clip in seconds this engine can take once planned, and why (None: any).
        bench.serve refuses a longer one with 413 before it is queued."""
        return None

    def warm_shapes_only(self) -> None:
        """From now on compile and capture nothing: a batch at a shape not made so far runs
        uncompiled (bench.serve after its warm-up, where a request would wait for the compile).
        Only an engine that compiles per shape has anything to do."""
        return None

    def uncompiled_decodes(self) -> int:
        """Decodes run uncompiled since warm_shapes_only, at shapes the warm-up did not make."""
        return 0

    def padded_rows(self, planned: int, rows: int) -> int:
        """The rows a batch of `rows` clips runs as (see row_buckets), `planned` the plan's most."""
        if self.row_buckets is None:
            return max(planned, rows)
        return next((size for size in sorted(self.row_buckets) if size >= rows), rows)

    def batch_shape(self, lengths: list[int]) -> Hashable | None:
        """The shape a batch of clips of these lengths runs at, for an engine that compiles or
        captures per shape (None: nothing is). The warm-up runs one batch of every shape the
        run will meet, so nothing is compiled or captured while a pass is timed."""
        return None

    def report(self) -> dict:
        """Engine-specific figures for the summary (e.g. compile counts)."""
        return {}

    def after_out_of_memory(self) -> None:
        """The batch ran out of GPU memory and is retried in halves: free what it left.
        Engines that size buffers by the batch drop them here so the halves get smaller ones."""
        import gc

        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def close(self) -> None:
        """Drop device memory so the next job of a multirun starts clean."""
        for name in list(vars(self)):
            if isinstance(getattr(self, name), torch.nn.Module):
                setattr(self, name, None)


def compiled_graphs() -> int:
    """Graphs torch.compile (Dynamo) has compiled in this process so far, any engine's."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def compile_seconds() -> float:
    """Seconds torch.compile has spent compiling in this process so far, any engine's: Dynamo's
    tracing and Inductor's code generation and builds, also of a graph read back from its
    on-disk cache (torch's own timing of each compile, which a warm-up's wall time includes)."""
    from torch._dynamo.utils import compilation_time_metrics

    return float(sum(compilation_time_metrics.get("_compile.compile_inner", [])))


def recompile_limit_hits() -> int:
    """Times Dynamo reached its recompile limit in this process so far. Past the limit it runs
    the function eager without compiling it, for every later call at a new shape, and says so
    only in a log line: a run that hit it measured another engine than it names."""
    from torch._dynamo.utils import counters

    return sum(n for message, n in counters["unimplemented"].items() if "recompile limit" in message.lower())


def split_into_windows(audio, seconds: float = 30.0) -> Sequence[np.ndarray]:
    """Cut audio into consecutive windows of at most `seconds` (long-form input). A clip bench.serve
    holds as its bytes (bench.data.streamed_audio) gives windows decoded as they are indexed."""
    size = int(seconds * SAMPLE_RATE)
    if not isinstance(audio, np.ndarray):
        return audio.windows(size)
    if len(audio) <= size:
        return [audio]
    return [audio[start : start + size] for start in range(0, len(audio), size)]


def window_lengths(windows: Sequence[np.ndarray]) -> list[int]:
    """The samples in each window, without decoding a streamed clip's windows to count them."""
    return list(windows.lengths) if isinstance(windows, StreamedWindows) else [len(w) for w in windows]


def chunk_count(samples: int) -> int:
    """The 30 s windows (chunks) a clip of this many samples is cut into: the shape both model
    families run it at (a Whisper window, a Voxtral audio chunk)."""
    return max(1, -(-samples // (30 * SAMPLE_RATE)))


def run_to_end(steps: Generator):
    """Every step of a generator, then what it returns."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def share_tokens(total: int, lengths: list[int]) -> list[int]:
    """Split a token budget over windows in proportion to their length, summing to total."""
    if len(lengths) == 1:
        return [total]
    weight = sum(lengths)
    bounds = [round(total * sum(lengths[: i + 1]) / weight) for i in range(len(lengths))]
    return [b - a for a, b in zip([0, *bounds[:-1]], bounds, strict=True)]
