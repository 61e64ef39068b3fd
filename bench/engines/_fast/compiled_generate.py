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

_recorded = [0]  # CUDA graphs Inductor's cudagraph trees recorded in this process


def _count_recording(args) -> None:
    from torch._dynamo.callback import CallbackTrigger

    if args.callback_trigger == getattr(CallbackTrigger, "CUDAGRAPH_RECORDING", None):
        _recorded[0] += 1


def listen_for_cuda_graph_recordings() -> bool:
    """Count every CUDA graph that Inductor records (torch.compile's reduce-overhead mode does,
    at run time, once per new input shape or memory layout: the first calls after a compile,
    but also any later call that meets a new shape). Dynamo announces each recording through its
    compilation callbacks (torch._dynamo.reset() drops those: called again, this listens again);
    False if this torch does not announce them."""
    from torch._dynamo.callback import CallbackTrigger, callback_handler

    if not hasattr(CallbackTrigger, "CUDAGRAPH_RECORDING"):
        return False
    if _count_recording not in callback_handler.start_callbacks:
        callback_handler.register_start_callback(_count_recording)
    return True


def cuda_graphs_recorded() -> int:
    return _recorded[0]


def inductor_cached_graphs() -> int:
    """Graphs in Inductor's on-disk cache: a warm cache makes a later compile of the same
    shapes (another run in the same process or on the same host) much cheaper."""
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    return sum(1 for p in (Path(cache_dir()) / "fxgraph").rglob("*") if p.is_file())


def inductor_cache_counts() -> dict[str, int]:
    """Inductor's compiles in this process so far, by how its on-disk cache served them: read
    back (a hit), or generated and built afresh (a miss, or a graph it cannot cache)."""
    from torch._dynamo.utils import counters

    inductor = counters["inductor"]
    return {
        "read": inductor["fxgraph_cache_hit"],
        "built": inductor["fxgraph_cache_miss"] + inductor["fxgraph_cache_bypass"],
    }


def inductor_cache_report(at_load: dict[str, int]) -> dict[str, int]:
    """The run's compiles since at_load (inductor_cache_counts then): each graph Inductor read
    back from its cache costs the cold start seconds less than one it built."""
    now = inductor_cache_counts()
    return {
        "inductor_graphs_read_from_cache": now["read"] - at_load["read"],
        "inductor_graphs_built": now["built"] - at_load["built"],
    }


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
        self.cache_counts_at_load = inductor_cache_counts()
        self.recordings_counted = listen_for_cuda_graph_recordings()
        self.recordings_at_start = cuda_graphs_recorded()

    def plan(self, batches: list[list[int]]) -> None:
        self.rows = max(self.rows, *map(len, batches))

    def batch_shape(self, lengths: list[int]):
        # the rows the batch is padded to: the plan's most for every batch, so one shape for the
        # run; after an out-of-memory back-off (rows reset), the halves' own, a new shape each
        return self.padded_rows(self.rows, len(lengths))

    def graph_captures(self) -> int:
        """CUDA graphs reduce-overhead mode recorded since load (on a GPU; none on a CPU)."""
        listen_for_cuda_graph_recordings()  # measure asks before and after every call: still listening
        return cuda_graphs_recorded() - self.recordings_at_start

    def padded(self, audios: list[np.ndarray]) -> list[np.ndarray]:
        """The batch padded to the run's rows (without a plan: the most rows seen so far)."""
        rows = self.padded_rows(self.rows, len(audios))
        if self.row_buckets is None:
            self.rows = rows
        return list(audios) + [audios[-1]] * (rows - len(audios))

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
            **inductor_cache_report(self.cache_counts_at_load),
            # reduce-overhead's CUDA graphs: recorded in the warm-up, never while timed (None: not countable)
            "cuda_graphs_recorded": self.graph_captures() if self.recordings_counted else None,
            "static_cache_len": self.max_cache_len,
            "padded_rows": self.rows,
        }
