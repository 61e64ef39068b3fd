"""Stock Voxtral generate with a static KV cache and transformers' own torch.compile path.

`cache_implementation="static"` with a CompileConfig makes generate compile the decode
step (mode reduce-overhead: CUDA graphs on a GPU). Shapes are held fixed so it does not
recompile mid-run: batches are padded to the run's largest batch's row count with copies
of their last clip, and the static cache is sized once for the run's longest clip's chunks
(at least `max_chunks`) plus their `max_new_tokens` (bench's measurement tells the engine
every batch before the warm-up; called without that plan, at the first batch). The
first call compiles (reported as cold start); graphs compiled after it are counted as
recompiles in the summary's engine_report.
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
    # the static cache holds at least this many 30 s chunks, or the first batch's longest
    # clip (the longest of all when the dataset is sorted by duration, its default)
    max_chunks: int = 1


class VoxtralCompile(VoxtralStock):
    # hooks inside a compiled region would break its graph: time generate as one phase
    phase_hooks = False
    PHASES = ("features", "h2d", "generate", "detokenise")
    COMPILES = True

    def load(self) -> None:
        super().load()
        from transformers import CompileConfig

        compile_config = CompileConfig(mode=self.engine_cfg.compile_mode, fullgraph=self.engine_cfg.fullgraph)
        # transformers compiles only on accelerators unless told otherwise; on the CPU the
        # same path runs (inductor, no CUDA graphs) so tests exercise what a GPU runs.
        compile_config._compile_all_devices = True
        self.compile_config = compile_config
        self.chunks = None  # the static cache's size, fixed at the first batch
        self.rows = 0
        self.calls = 0
        self.graphs_at_start = vox.compiled_graphs()
        self.cached_graphs_at_load = vox.inductor_cached_graphs()
        self.graphs_after_first_call = None

    def plan(self, batches: list[list[int]]) -> None:
        # one shape for the run: every batch padded to the most rows, the cache sized for the
        # longest clip, so generate compiles once, in the warm-up
        self.rows = max(self.rows, *map(len, batches))
        longest = max(vox.chunks_in(n) for lengths in batches for n in lengths)
        self.chunks = max(self.engine_cfg.max_chunks, longest, self.chunks or 0)

    def batch_shape(self, lengths: list[int]):
        return "the run's one shape"

    def pad_batch(self, audios: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
        longest = max(vox.n_chunks(a) for a in audios)
        if self.chunks is None:
            self.chunks = max(self.engine_cfg.max_chunks, longest)
        if longest > self.chunks:
            raise BenchError(
                f"a clip of {max(map(len, audios)) / vox.SAMPLE_RATE:.0f} s needs {longest} chunks of 30 s, "
                f"more than the static cache sized at the first batch holds ({self.chunks}); "
                f"raise engine.max_chunks to {longest}, or keep dataset.sort_by_duration=true"
            )
        self.rows = max(self.rows, len(audios))
        return audios + [audios[-1]] * (self.rows - len(audios)), len(audios)

    @property
    def max_cache_len(self) -> int | None:
        return None if self.chunks is None else vox.static_cache_len(self.chunks, self.engine_cfg.max_new_tokens)

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
