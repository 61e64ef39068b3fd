"""What every engine on the fast-decode core shares, whatever model it wraps: its patches
switched on (and unknown ones refused), the CUDA graphs and compiles it counts, token
streaming for bench.serve, and the decode part of its report. Mixed in before the model's
engine class; the engine sets self.decoder (a FastDecoder) in load."""

from __future__ import annotations

from bench.engines._fast import packed_linears
from bench.engines._fast.compiled_generate import inductor_cache_counts, inductor_cache_report, inductor_cached_graphs
from bench.engines._fast.layers import GRAPHS_PER_SHAPE, allow_recompiles
from bench.engines.base import compiled_graphs
from bench.errors import BenchError


class FastDecodeEngine:
    PATCHES: dict[str, str]
    # inert elsewhere, so the ablation plans them only on this device type
    PATCH_DEVICE = {"cuda_graph": "cuda", "packed_linears": "cpu"}

    def switch_on_patches(self) -> None:
        """self.on: the engine.patches this run applies; a name the engine does not have is refused."""
        unknown = sorted(set(self.engine_cfg.patches) - set(self.PATCHES))
        if unknown:
            raise BenchError(f"unknown patch(es) {unknown}; {self.engine_cfg.name} has: {', '.join(self.PATCHES)}")
        self.on = set(self.engine_cfg.patches)

    def pack_decoder(self, decoder, owner, head: str) -> None:
        """packed_linears: the decoder's linear layers and the output projection (owner.<head>)
        through oneDNN over weights reordered now, where the patch acts (float32 on the CPU)."""
        self.packed_linears_active = "packed_linears" in self.on and packed_linears.available(self.device, self.dtype)
        if self.packed_linears_active:
            packed_linears.pack_linears(decoder)
            setattr(owner, head, packed_linears.PackedLinear(getattr(owner, head)))

    def count_graphs_from_now(self) -> None:
        """Graphs compiled so far in this process, and Inductor's cache: the report counts from here."""
        self.graphs_at_load = compiled_graphs()
        self.cached_graphs_at_load = inductor_cached_graphs() if self.decoder.options.compiled else None
        self.cache_counts_at_load = inductor_cache_counts()

    def allow_recompiles_for(self, batches: list[list[int]]) -> None:
        """Room in Dynamo's recompile limits for every batch shape the plan holds (see
        layers.allow_recompiles): the run's shapes are all compiled, none runs eager."""
        shapes = {self.batch_shape(lengths) for lengths in batches} - {None}
        allow_recompiles(GRAPHS_PER_SHAPE * len(shapes))

    def graph_captures(self) -> int:
        return self.decoder.captures

    def capture_seconds(self) -> float:
        return self.decoder.capture_seconds

    def warm_shapes_only(self) -> None:
        self.decoder.warm_only = True

    def uncompiled_decodes(self) -> int:
        return self.decoder.uncompiled_decodes

    def stream_to(self, listener) -> None:
        self.decoder.on_token = listener

    def decode_report(self) -> dict:
        options = self.decoder.options
        return {
            "patches": sorted(self.on),
            "cuda_graph_active": options.graph,
            "compiled_step_active": options.compiled,
            "compiled_prefill_active": options.compiled_prefill,
            "packed_linears_active": self.packed_linears_active,
            "compiled_scope": options.compile_scope,  # layers: one graph shared by all; step: the whole step
            # one per decode-step shape, shared by every decoder layer, and with compiled_prefill
            # one per prefill and encoder shape (none if an earlier engine in this process
            # compiled the same); more means a recompile: a graph break, a cache regrown, a
            # layer that did not fit the others' graph
            "graphs_compiled": compiled_graphs() - self.graphs_at_load,
            # 0: the cold start paid a full compile; more: Inductor reused cached graphs
            "inductor_cached_graphs_at_load": self.cached_graphs_at_load,
            **(inductor_cache_report(self.cache_counts_at_load) if options.compiled else {}),
            "end_of_sequence_read": "one step late, never blocking" if options.lagged_eos else "after every step",
        }
