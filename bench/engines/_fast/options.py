"""What shapes the fast-decode core's decoding: the model it drives (DecoderModel) and the
patches that act on the loop, resolved once when an engine loads (DecodeOptions)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import torch


class CompileScope(StrEnum):
    """What compiled_step compiles: one decoder layer for all, the whole step, or "auto": layers
    under a CUDA graph (whose replay runs no Python anyway), else the whole step."""

    auto = "auto"
    layers = "layers"
    step = "step"


class DecoderModel(Protocol):
    def forward(self, embeds, attention_mask, positions, cache_position, cache) -> torch.Tensor: ...

    def embed(self, token_ids: torch.Tensor) -> torch.Tensor: ...

    def new_cache(self, max_len: int | None): ...  # None: a dynamic cache

    def self_attention_layers(self, cache) -> list: ...  # the static layers a decode step writes

    def initialize(self, cache, rows: int, dtype: torch.dtype) -> None: ...  # allocate a static cache now

    def layer_view(self, layer, cache, index: int): ...  # with: the cache as one decoder layer sees it (layers)

    takes_cache_position: bool  # older transformers want the write slot; newer caches track it
    layers: object  # the decoder layers, for compiling one of them for all (None: no one-layer cache view)
    cache_keyword: str


@dataclass(frozen=True)
class DecodeOptions:
    """The patches that shape decoding, resolved once when the engine loads."""

    static_cache: bool
    lagged_eos: bool  # read end-of-sequence back a step late, never stalling (off: after every step, as generate)
    compiled: bool  # the step through torch.compile (needs the static cache's fixed shapes)
    compiled_prefill: bool  # the prefill through torch.compile, one graph per batch shape (needs them too)
    graph: bool  # the step captured as a CUDA graph (needs the static cache, and CUDA)
    compile_scope: str | None  # "layers" (one compiled layer for all), "step" (the whole step), None
    window: bool = False  # attention_window: a step attends the slots in use (needs the static cache)
    # chunked_prefill: a prompt longer than this many positions is prefilled this many at a time
    # (None: whole; prefill_pieces.py)
    prefill_piece: int | None = None

    @classmethod
    def from_patches(cls, on: set[str], device: torch.device, scope: str, prefill_piece: int = 512) -> DecodeOptions:
        static = "static_cache" in on
        graph = static and "cuda_graph" in on and device.type == "cuda"
        compiled = static and "compiled_step" in on
        if compiled and scope == "auto":
            # A replayed graph runs none of the step's Python, so only the kernels count, and the
            # decoder layers hold nearly all of them: one compiled layer for all keeps the fusion
            # at a small cold start. Where the host runs every step, compiling it whole also
            # removes the model's Python around the layers (mask, rotary tables).
            scope = CompileScope.layers if graph else CompileScope.step
        return cls(
            static_cache=static,
            lagged_eos="sync_free_loop" in on,
            compiled=compiled,
            compiled_prefill=static and "compiled_prefill" in on,
            graph=graph,
            compile_scope=str(scope) if compiled else None,
            window=static and "attention_window" in on,
            prefill_piece=prefill_piece if static and "chunked_prefill" in on else None,
        )
