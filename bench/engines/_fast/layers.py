"""Regional compilation: a stack of identical layers through one compiled function.

torch.compile fuses what eager mode runs as many small kernels (every RMSNorm, rotary
embedding and residual add is several), but compiling a whole model traces and compiles
every one of its layers: that is the cold start a run pays. Every layer of a stack runs the
same code on tensors of the same shapes; only its weights (and its part of a KV cache)
differ. So one function, compiled once per input shape, serves them all:

- the layer comes in as an argument, so its parameters are graph inputs, not constants
  (Dynamo's default for modules since torch 2.5);
- a KV cache comes in as a one-layer view, so the layer's index, which transformers uses
  to pick that layer's slot, never reaches the compiled code; it would be a constant there,
  and each layer would compile a graph of its own.

The decode step under a CUDA graph uses it for the language model's layers (the rest of the
step, a few kernels, stays eager and is replayed by the graph anyway); compiled_prefill uses
it for the prefill (the same layers at the prompt's shape: one more graph of one layer) and
for the audio encoder's layers. Outside `compiled()` the layers run as shipped.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from functools import partial

import torch
from torch import nn


class OneLayerCache:
    """A static cache as one layer sees it: update() writes that layer's keys and values,
    whichever layer index the attention passes along."""

    def __init__(self, layer):
        self.layer = layer

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        return self.layer.update(key_states, value_states, *args, **kwargs)


@contextmanager
def one_layer_view(layer, cache, index: int):
    yield OneLayerCache(cache.layers[index])


def _run_layer(layer: nn.Module, hidden_states: torch.Tensor, args: tuple, kwargs: dict):
    return type(layer).forward(layer, hidden_states, *args, **kwargs)  # the class's forward: not ours below


RECOMPILE_FLOOR = 64  # graphs one compiled function may hold before Dynamo stops compiling it
# per batch shape at most: the decode step's, the prefill's two (chunked_prefill) and the encoder's
GRAPHS_PER_SHAPE = 4


def allow_recompiles(graphs: int) -> None:
    """Let one compiled function hold this many graphs (one per input shape), and every compiled
    function of the process together twice that: past Dynamo's limits a function runs eager at
    any new shape, without an error, and a run would time another engine than it names. Only
    raised, never lowered (another engine in the process may need more)."""
    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, RECOMPILE_FLOOR, graphs)
    config.accumulated_recompile_limit = max(config.accumulated_recompile_limit, 2 * config.recompile_limit)


class CompiledLayers:
    """Inside `compiled()`, each of `layers` runs through one compiled function; outside, as
    shipped. `cache_keyword` is the name this transformers gives a decoder layer's cache
    argument ("cache", or "past_key_values" before 5.24); None for an encoder's layers."""

    def __init__(self, layers, cache_keyword: str | None = None, layer_view: Callable | None = None):
        """layer_view(layer, cache, index): a context manager giving the cache as layer `index`
        sees it, for the compiled call (default: OneLayerCache over cache.layers[index], a
        decoder-only model's static cache)."""
        self.cache_keyword = cache_keyword
        self.layer_view = layer_view or one_layer_view
        self.active = False
        # Dynamo keeps its graphs per code object, and every stack shares _run_layer's: one graph
        # per (layer class, input shape) of a run (decode, prefill and encoder shapes for each
        # batch shape) must stay under its limit; an engine's plan raises it to what the run needs
        allow_recompiles(RECOMPILE_FLOOR)
        self.layer_fn = torch.compile(_run_layer, dynamic=False)
        for index, layer in enumerate(layers):
            # an instance attribute shadows the class's forward, which _run_layer still calls
            layer.forward = partial(self._forward, layer, index)

    def _forward(self, layer: nn.Module, index: int, hidden_states, *args, **kwargs):
        if not self.active:
            return type(layer).forward(layer, hidden_states, *args, **kwargs)
        cache = kwargs.get(self.cache_keyword) if self.cache_keyword else None
        if cache is None:
            return self.layer_fn(layer, hidden_states, args, kwargs)
        with self.layer_view(layer, cache, index) as view:
            return self.layer_fn(layer, hidden_states, args, {**kwargs, self.cache_keyword: view})

    @contextmanager
    def compiled(self):
        self.active = True
        try:
            yield
        finally:
            self.active = False
