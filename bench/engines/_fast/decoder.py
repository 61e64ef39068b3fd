"""Greedy decoding around any decoder: static KV cache per batch shape, compiled step, CUDA graph.

The model supplies a `DecoderModel` (options.py): `forward` (input embeddings, an attention
mask, positions, the cache write slot, the cache -> float logits of the last position), `embed`
(token ids -> embeddings) and `new_cache` (static, of a length, or dynamic). Everything else is
here:

    prefill: forward over the prompt (chunked_prefill: a long one a piece at a time,
             prefill_pieces.py), pick the first token
    decode:  per step, embed the last token, forward one position (or replay the captured
             graph of that), pick the next token; then read back whether every row had
             finished one step earlier (sync_free_loop: copied to host memory without
             blocking, so the GPU always holds the next step: one extra step at most)

A static cache, its attention-mask buffer and its captured graph are made for each batch
shape (rows, cache length) at its first batch and kept: a graph holds the addresses of the
tensors it captured, so between batches they are reset in place, never replaced. bench.serve
may pause a batch between its steps (generate_steps) and run others: a paused batch keeps its
shape's cache, and another batch of that shape waits until it is done. After bench.serve's
warm-up (warm_only) nothing more is compiled or captured: a shape, prefill piece or attention
window not made by then runs uncompiled, a new shape on a cache dropped as its batch ends.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch

from bench.engines._fast import prefill_pieces as pieces
from bench.engines._fast import step_graph, windows
from bench.engines._fast.end_of_sequence import FinishedFlag
from bench.engines._fast.lengths import force_length
from bench.engines._fast.options import DecodeOptions, DecoderModel
from bench.engines.base import run_to_end
from bench.pipeline.clock import Clock


@dataclass
class ShapeState:
    """What the static path keeps per batch shape."""

    cache: object = None
    valid: torch.Tensor | None = None  # valid[b, j]: row b may attend key j
    graphs: dict = field(default_factory=dict)  # attention window (slots; the capacity without the patch) -> replay
    warmed: bool = False  # every window this shape can reach made (attention_window)
    held: bool = False  # a batch paused mid-decode holds the cache: another of this shape waits
    made: set = field(default_factory=set)  # ("prefill", positions) and ("step", window): compiled here
    kept: bool = True  # False: a shape met after the warm-up (warm_only), its cache dropped after its batch


class FastDecoder:
    def __init__(
        self,
        model: DecoderModel,
        options: DecodeOptions,
        device: torch.device,
        eos: int,
        pad: int,
        logit_filter: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
    ):
        """`logit_filter(logits, step)` applies a model's own decoding rules before the greedy
        choice (Whisper suppresses some tokens); `pad` is what a finished row emits."""
        from bench.engines._fast.layers import CompiledLayers

        self.model, self.options, self.device, self.eos, self.pad = model, options, device, eos, pad
        self.logit_filter = logit_filter
        # on_token(tokens): each step's token per row, as it is chosen (bench.serve streams text
        # from it). None when nothing listens, so a timed pass reads nothing back per step.
        self.on_token: Callable[[torch.Tensor], None] | None = None
        self.shapes: dict[tuple[int, int], ShapeState] = {}
        self.state = ShapeState()
        self.cache_len = 0
        self.captures = 0
        self.capture_seconds = 0.0  # spent capturing graphs, the compiles inside them excluded
        self.cache_in_use = None
        # bench.serve, after its warm-up: nothing more is compiled or captured, since a request waits
        # while it is (seconds to minutes); a shape or window not made by then runs uncompiled
        self.warm_only = False
        self.uncompiled_decodes = 0  # decodes (a batch, a Whisper window) at a shape the warm-up did not make
        self.window = windows.Window()  # attention_window: the slots a step's attention reads
        # the prefill is launch-bound at small batch (hundreds of small kernels for a few ms of
        # work): compiled_prefill fuses it, one graph per prompt shape, compiled in the warm-up.
        # Per layer, as the step under a graph, so the cold start compiles one layer more; whole
        # where the step is compiled whole or the model has no per-layer cache view (layers None)
        per_layer = model.layers is not None and options.compile_scope != "step"
        self.prefill_per_layer = options.compiled_prefill and per_layer
        if options.compile_scope == "layers" or self.prefill_per_layer:
            self.compiled_layers = CompiledLayers(model.layers, model.cache_keyword, model.layer_view)
        if options.compile_scope == "step":
            self._compiled_step = torch.compile(self._step_forward, dynamic=False)
        whole = options.compiled_prefill and not per_layer
        self._prefill = torch.compile(model.forward, dynamic=False) if whole else model.forward

    # -- static state per batch shape ---------------------------------------------------------
    def use_shape(self, rows: int, cache_len: int) -> None:
        """The cache, mask buffer and graph of batches of this shape (made at its first batch)."""
        self.cache_len = cache_len
        if self.warm_only and (rows, cache_len) not in self.shapes:
            # run uncompiled, its cache dropped after it: no graph holds its address, and each such
            # shape kept would hold a cache as long as its clip (gigabytes for half an hour on a GPU)
            self.state = ShapeState(kept=False)
            self.uncompiled_decodes += 1
            return
        self.state = self.shapes.setdefault((rows, cache_len), ShapeState())

    def _may_compile(self, what: tuple) -> bool:
        """Whether `what` of the current shape may run compiled (or captured): made before, or the
        warm-up (warm_only off) is making it now."""
        if what in self.state.made:
            return True
        if self.warm_only:
            return False
        self.state.made.add(what)
        return True

    def forget_shapes(self) -> None:
        """Drop every cache and graph (after running out of memory: the halves get their own)."""
        self.shapes, self.state = {}, ShapeState()

    def _cache(self, rows: int, dtype: torch.dtype):
        if not self.options.static_cache:
            self.cache_in_use = self.model.new_cache(None)
        elif self.state.cache is None:
            self.state.cache, self.state.graphs = self.model.new_cache(self.cache_len), {}
            # allocated now rather than at its first write: a compiled prefill then sees the same
            # (initialised) cache at every batch, not a fresh one at the first and a recompile after
            self.model.initialize(self.state.cache, rows, dtype)
            if self.options.window:
                windows.install(self.model.self_attention_layers(self.state.cache), self.window)
            self.cache_in_use = self.state.cache
        else:
            self.state.cache.reset()  # zeroes in place: a captured graph still points at it
            self.cache_in_use = self.state.cache
        return self.cache_in_use

    def _valid(self, rows: int, kv_len: int) -> torch.Tensor:
        """The attention-mask buffer: reused with the static cache (a captured graph reads it)."""
        buffer = self.state.valid if self.options.static_cache else None
        if buffer is None or buffer.shape != (rows, kv_len):
            buffer = torch.zeros(rows, kv_len, dtype=torch.bool, device=self.device)
            if self.options.static_cache:
                self.state.valid, self.state.graphs = buffer, {}
        return buffer.zero_()

    # -- the loop -----------------------------------------------------------------------------
    def generate(
        self, embeds, mask, target_tokens: list[int] | None, budget: int, clock: Clock, compile_prefill: bool = True
    ) -> torch.Tensor:
        """Greedy tokens (rows x budget, padding after each row's end-of-sequence). A caller whose
        prompt lengths vary within one batch shape (Whisper's long-form windows) says
        compile_prefill=False, so no prompt shape is compiled while a pass is timed."""
        return run_to_end(self.generate_steps(embeds, mask, target_tokens, budget, clock, compile_prefill))

    def generate_steps(
        self,
        embeds,
        mask,
        target_tokens: list[int] | None,
        budget: int,
        clock: Clock,
        compile_prefill: bool = True,
        pause: bool = False,
    ) -> Generator[None, None, torch.Tensor]:
        """generate, as a generator. With pause, it yields between the pieces of a chunked
        prefill, after the prefill and after every decode step, so bench.serve runs other batches
        between the steps of a long transcript; the batch keeps its shape's cache meanwhile, and
        another batch of that shape waits (yields) until it is done. After each pause it takes
        its own shape and cache back, whatever ran between."""
        state, cache_len = self.state, self.cache_len
        while state.held:  # reached only while another batch of this shape is paused mid-decode
            yield
        self._resume(state, cache_len, None)
        state.held = pause and self.options.static_cache
        try:
            return (yield from self._decode(embeds, mask, target_tokens, budget, clock, compile_prefill, pause))
        finally:
            state.held = False
            if not state.kept:  # made for this batch alone: its cache, as long as its clip, goes now
                if self.cache_in_use is state.cache:
                    self.cache_in_use = None
                state.cache = state.valid = None

    def _resume(self, state: ShapeState, cache_len: int, cache) -> None:
        """This batch's shape, and its cache, back in use after a pause, its attention reading the
        whole cache: a batch run in the pause left the window at its own last step's (a prefill
        piece then read that many slots: bench.serve answered a long clip 500), and a decode
        step sets its own."""
        self.state, self.cache_len = state, cache_len
        self.window.size = None
        if cache is not None:
            self.cache_in_use = cache

    def _decode(self, embeds, mask, target_tokens, budget: int, clock: Clock, compile_prefill: bool, pause: bool):
        rows, length = mask.shape
        device, options = self.device, self.options
        state, cache_len = self.state, self.cache_len
        kv_len = self.cache_len if options.static_cache else length + budget
        valid = self._valid(rows, kv_len)
        valid[:, :length] = mask.bool()
        targets = torch.tensor(target_tokens, device=device) if target_tokens is not None else None
        cache = self._cache(rows, embeds.dtype)
        out = torch.full((rows, budget), self.pad, dtype=torch.long, device=device)
        unfinished = torch.ones(rows, dtype=torch.bool, device=device)
        # positions as generate derives them from a left-padded mask
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
        position = positions[:, -1:] + 1
        takes_slot = self.model.takes_cache_position

        self.window.size = None  # the prefill reads the whole cache
        sizes = windows.window_sizes(kv_len, length + 1) if options.window else [kv_len]
        for start, end in pieces.piece_bounds(length, options.prefill_piece):
            if pause and start:  # between the pieces of a long prompt
                yield
                self._resume(state, cache_len, cache)
            with clock.phase("prefill"):
                whole = (start, end) == (0, length)  # the whole prompt's 2D mask, or a piece's
                compiled = compile_prefill and self._may_compile(("prefill", end - start, whole))
                logits = self._prefill_part(embeds, mask, positions, valid, start, end, cache, compiled)
        with clock.phase("prefill"):
            token = self.pick(logits, 0, targets, unfinished)
            out[:, 0] = token
            if self.on_token:
                self.on_token(token)

        finished = FinishedFlag(self.device) if options.lagged_eos else None
        if finished:
            finished.copy(unfinished)  # after the prefill's token
        # one decode phase for the loop; a phase per step when it pauses (none spans a pause)
        with nullcontext() if pause else clock.phase("decode"):
            for step in range(1, budget):
                if pause:
                    yield
                    self._resume(state, cache_len, cache)
                with clock.phase("decode") if pause else nullcontext():
                    if not finished and not bool(unfinished.any()):
                        break  # read back after every step, as generate does: the GPU waits for it
                    cache_position = torch.full((1,), length + step - 1, device=device) if takes_slot else None
                    valid[:, length + step - 1] = True
                    size = windows.size_for(length + step, sizes)  # slots written after this step's write
                    if options.window:
                        self.window.size = size
                    compiled = self._may_compile(("step", size))
                    if options.graph and compiled:
                        replay = step_graph.captured(self, token, position, cache_position, size)
                        logits = replay(token, position, cache_position)
                    else:
                        attended = valid[:, : size if options.static_cache else length + step]
                        logits = self.step(token, position, cache_position, attended, compiled)
                    token = self.pick(logits, step, targets, unfinished)
                    out[:, step] = token
                    if self.on_token:
                        self.on_token(token)
                    position = position + 1
                    clock.count("decode_steps", 1)
                    if finished:
                        finished.copy(unfinished)
                        if finished.all_done_before_this_step():
                            break  # this step was the one extra: its tokens are all padding
        if options.window and not self.state.warmed and not self.warm_only:  # this shape's first batch
            with clock.phase("decode"):
                self._make_windows(token, position, sizes)
        return out

    def _prefill_part(self, embeds, mask, positions, valid, start: int, end: int, cache, compiled: bool):
        """The forward over prompt positions start..end. The whole prompt passes its 2D mask, from
        which the model builds the prefill mask exactly as generate does; a piece passes its own
        (prefill_pieces.piece_mask)."""
        slots = torch.arange(start, end, device=self.device) if self.model.takes_cache_position else None
        if (start, end) == (0, mask.shape[1]):
            args = (embeds, mask, positions, slots, cache)
        else:
            # a copy: a view into the whole prompt's rows keeps their stride (contiguous() keeps it too at
            # one row), where the layers after the first see their own output's: a compiled layer recompiled
            piece = embeds[:, start:end].clone(memory_format=torch.contiguous_format)
            args = (piece, pieces.piece_mask(valid, start, end), positions[:, start:end], slots, cache)
        if not compiled:
            return self.model.forward(*args)
        if self.prefill_per_layer:
            with self.compiled_layers.compiled():
                return self.model.forward(*args)
        return self._prefill(*args)

    def _make_windows(self, token, position, sizes: list[int]) -> None:
        """Compile (and capture) the step at every window of this shape a later batch may reach,
        so none is made while a pass is timed. Each runs once on this batch's last token; what
        it writes lands in slot 0 of a cache the next batch resets."""
        compiles = self.options.compiled or self.options.graph
        for size in sizes if compiles else []:
            self.state.made.add(("step", size))
            for layer in self.model.self_attention_layers(self.state.cache):
                layer.cumulative_length.zero_()
            cache_position = (
                torch.zeros(1, dtype=torch.long, device=self.device) if self.model.takes_cache_position else None
            )
            self.window.size = size
            if self.options.graph:
                step_graph.captured(self, token, position, cache_position, size)
            else:
                self.step(token, position, cache_position, self.state.valid[:, :size])
        self.state.warmed = True

    def pick(self, logits, step: int, targets, unfinished) -> torch.Tensor:
        """Greedy choice as generate makes it, with length matching; finished rows emit padding."""
        if self.logit_filter is not None:
            logits = self.logit_filter(logits, step)
        if targets is not None:
            logits = force_length(logits, step, targets, self.eos)
        token = logits.argmax(dim=-1)
        token = torch.where(unfinished, token, self.pad)
        unfinished &= token != self.eos
        return token

    # -- one decode step ----------------------------------------------------------------------
    def step(self, token, position, cache_position, valid, compiled: bool = True) -> torch.Tensor:
        args = (token, position, cache_position, valid)
        if not compiled:
            return self._step_forward(*args)
        if self.options.compile_scope == "layers":
            with self.compiled_layers.compiled():
                return self._step_forward(*args)
        if self.options.compile_scope == "step":
            return self._compiled_step(*args)
        return self._step_forward(*args)

    def _step_forward(self, token, position, cache_position, valid) -> torch.Tensor:
        embed = self.model.embed(token[:, None])
        return self.model.forward(embed, valid[:, None, None, :], position, cache_position, self.cache_in_use)
