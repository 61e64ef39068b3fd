"""transformers' own compile path for generate, held to one shape for the whole run.

`cache_implementation="static"` with a CompileConfig makes generate compile its decode step
(mode reduce-overhead: CUDA graphs on a GPU). A compiled step is specialised to its shapes,
so the run keeps one: every batch padded to the run's most rows (copies of its last clip,
their output dropped) and the static cache one length. bench's measurement tells the engine
every batch before the warm-up (`plan`); the first call compiles (the cold start), and
graphs compiled after it are counted as recompiles. voxtral_compile and whisper_compile are
their model's stock engine plus this.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.engines.base import compiled_graphs


def inductor_cached_graphs() -> int:
    """Graphs in Inductor's on-disk cache: a warm cache makes a later compile of the same
    shapes (another run in the same process or on the same host) much cheaper."""
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    return sum(1 for p in (Path(cache_dir()) / "fxgraph").rglob("*") if p.is_file())


class CompiledGenerate:
    """Mixed into a stock engine that calls generate with **generate_kwargs(): its engine
    config has compile_mode and fullgraph; max_cache_len says the static cache's length."""

    PHASES = ("features", "h2d", "generate", "detokenise")
    COMPILES = True
    phase_hooks = False  # hooks inside a compiled region would break its graph: generate is one phase

    def setup_compile(self) -> None:
        from transformers import CompileConfig

        config = CompileConfig(mode=self.engine_cfg.compile_mode, fullgraph=self.engine_cfg.fullgraph)
        # transformers compiles only on accelerators unless told otherwise; on the CPU the
        # same path runs (inductor, no CUDA graphs) so tests exercise what a GPU runs.
        config._compile_all_devices = True
        self.compile_config = config
        self.rows, self.calls = 0, 0
        self.graphs_at_start, self.graphs_after_first_call = compiled_graphs(), None
        self.cached_graphs_at_load = inductor_cached_graphs()

    def plan(self, batches: list[list[int]]) -> None:
        self.rows = max(self.rows, *map(len, batches))

    def batch_shape(self, lengths: list[int]):
        return "the run's one shape"

    def padded(self, audios: list[np.ndarray]) -> list[np.ndarray]:
        """The batch padded to the run's rows (without a plan: the most rows seen so far)."""
        self.rows = max(self.rows, len(audios))
        return list(audios) + [audios[-1]] * (self.rows - len(audios))

    def after_out_of_memory(self) -> None:
        self.rows = 0  # pad the halves to their own size (a new shape: one recompile)
        super().after_out_of_memory()

    def compiled_generate_kwargs(self) -> dict:
        return {
            "cache_implementation": "static",
            "compile_config": self.compile_config,
            "max_cache_len": self.max_cache_len,
        }

    def transcribe(self, audios, target_tokens, clock):
        """The stock engine's transcribe; after the first call, what the cold start compiled."""
        out = super().transcribe(audios, target_tokens, clock)
        self.calls += 1
        if self.calls == 1:
            self.graphs_after_first_call = compiled_graphs()
        return out

    def report(self) -> dict:
        now = compiled_graphs()
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
