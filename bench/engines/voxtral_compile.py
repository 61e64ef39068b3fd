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
from bench.engines._fast.compiled_generate import CompiledGenerate
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


class VoxtralCompile(CompiledGenerate, VoxtralStock):
    PHASES = CompiledGenerate.PHASES
    phase_hooks = False
    # one static cache for the run, which generate keeps in the model and resets at each call,
    # and every batch padded to its one shape: a batch run inside another's generate would
    # reset the cache that one is decoding with. A long clip is one step here (docs/serving.md)
    PAUSES_IN_GENERATE = False

    def load(self) -> None:
        super().load()
        self.setup_compile()
        self.chunks = None  # the static cache's size: the run's longest clip (see plan)

    def plan(self, batches: list[list[int]]) -> None:
        # one shape for the run: every batch padded to the most rows, the cache sized for the
        # longest clip, so generate compiles once, in the warm-up
        super().plan(batches)
        longest = max(vox.chunks_in(n) for lengths in batches for n in lengths)
        self.chunks = max(self.engine_cfg.max_chunks, longest, self.chunks or 0)

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
        return self.padded(audios), len(audios)

    def longest_clip(self) -> tuple[float, str] | None:
        if self.chunks is None:
            return None
        return self.chunks * vox.CHUNK_SAMPLES / vox.SAMPLE_RATE, (
            f"voxtral_compile decodes every batch in one static cache of {self.chunks} chunks of 30 s "
            "(engine.max_chunks raises it; each batch then reads all of it)"
        )

    @property
    def max_cache_len(self) -> int | None:
        return None if self.chunks is None else vox.static_cache_len(self.chunks, self.engine_cfg.max_new_tokens)

    def generate_kwargs(self, batch_rows: int) -> dict:
        return self.compiled_generate_kwargs()


ENGINE = VoxtralCompile
