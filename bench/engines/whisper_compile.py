"""Whisper through transformers' generate with a static KV cache and its own torch.compile path.

whisper_hf plus transformers' compile path held to one shape for the run
(bench/engines/_fast/compiled_generate.py): every batch, and every window of a long clip,
padded to the run's most rows, the self-attention cache as long as Whisper's whole text
context (448) so a window's prompt never changes it. The first call compiles (the cold
start); graphs compiled after it are counted as recompiles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.engines._fast.compiled_generate import CompiledGenerate
from bench.engines.whisper_hf import Config as HFConfig
from bench.engines.whisper_hf import WhisperHF


@dataclass
class Config(HFConfig):
    name: str = "whisper_compile"
    compile_mode: str = "reduce-overhead"
    fullgraph: bool = False


class WhisperCompile(CompiledGenerate, WhisperHF):
    PHASES = CompiledGenerate.PHASES
    phase_hooks = False

    def load(self) -> None:
        super().load()
        self.setup_compile()

    @property
    def max_cache_len(self) -> int:
        return self.n_text_ctx

    def pad_batch(self, audios: list[np.ndarray]) -> list[np.ndarray]:
        return self.padded(audios)

    def generate_kwargs(self) -> dict:
        return self.compiled_generate_kwargs()


ENGINE = WhisperCompile
