"""Stock Voxtral generate with a static KV cache and transformers' own torch.compile path.

`cache_implementation="static"` with a CompileConfig makes generate compile the decode
step (mode reduce-overhead: CUDA graphs on a GPU). Shapes are held fixed so it does not
recompile mid-run: batches are padded to the first (largest) batch's row count with
copies of their last clip, and the static cache is sized once for `max_chunks` chunks
plus `max_new_tokens`. The first call compiles (reported as cold start); graphs compiled
after it are counted as recompiles in the summary's engine_report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.engines import _voxtral as vox
from bench.engines.voxtral_stock import Config as StockConfig
from bench.engines.voxtral_stock import VoxtralStock
from bench.errors import BenchError


@dataclass
class Config(StockConfig):
    name: str = "voxtral_compile"
    compile_mode: str = "reduce-overhead"
    fullgraph: bool = False
    max_chunks: int = 2  # longest audio the static cache is sized for: max_chunks x 30 s


class VoxtralCompile(VoxtralStock):
    # hooks inside a compiled region would break its graph: time generate as one phase
    phase_hooks = False

    def load(self) -> None:
        super().load()
        from transformers import CompileConfig

        compile_config = CompileConfig(mode=self.engine_cfg.compile_mode, fullgraph=self.engine_cfg.fullgraph)
        # transformers compiles only on accelerators unless told otherwise; on the CPU the
        # same path runs (inductor, no CUDA graphs) so tests exercise what a GPU runs.
        compile_config._compile_all_devices = True
        self.compile_config = compile_config
        prompt_overhead = 16  # BOS, [INST], [BEGIN_AUDIO], [/INST], lang:xx, [TRANSCRIBE]
        # max_new_tokens counts per chunk (see voxtral_stock)
        self.max_cache_len = prompt_overhead + self.engine_cfg.max_chunks * (
            vox.TOKENS_PER_CHUNK + self.engine_cfg.max_new_tokens
        )
        self.rows = 0
        self.calls = 0
        self.graphs_at_start = vox.compiled_graphs()
        self.cached_graphs_at_load = vox.inductor_cached_graphs()
        self.graphs_after_first_call = None

    def pad_batch(self, audios: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
        too_long = [i for i, a in enumerate(audios) if vox.n_chunks(a) > self.engine_cfg.max_chunks]
        if too_long:
            raise BenchError(
                f"a clip of {len(audios[too_long[0]]) / vox.SAMPLE_RATE:.0f} s needs more than "
                f"engine.max_chunks={self.engine_cfg.max_chunks} chunks of 30 s; raise engine.max_chunks"
            )
        self.rows = max(self.rows, len(audios))
        return audios + [audios[-1]] * (self.rows - len(audios)), len(audios)

    def after_out_of_memory(self) -> None:
        self.rows = 0  # pad the halves to their own size (a new shape: one recompile)
        super().after_out_of_memory()

    def generate_kwargs(self, batch_rows: int) -> dict:
        return {
            "cache_implementation": "static",
            "compile_config": self.compile_config,
            "max_cache_len": self.max_cache_len,
        }

    def transcribe(self, audios, target_tokens, clock):
        out = super().transcribe(audios, target_tokens, clock)
        self.calls += 1
        if self.calls == 1:
            self.graphs_after_first_call = vox.compiled_graphs()
        return out

    def report(self) -> dict:
        now = vox.compiled_graphs()
        first = self.graphs_after_first_call if self.graphs_after_first_call is not None else now
        return {
            "compile_mode": self.engine_cfg.compile_mode,
            "graphs_compiled_at_cold_start": first - self.graphs_at_start,
            "recompiles": now - first,
            # 0: the cold start paid the full compile; more: Inductor reused cached graphs
            "inductor_cached_graphs_at_load": self.cached_graphs_at_load,
            "static_cache_len": self.max_cache_len,
            "padded_rows": self.rows,
        }


ENGINE = VoxtralCompile
