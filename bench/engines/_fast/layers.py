"""compiled_step under a CUDA graph: the decoder layers through one compiled function.

torch.compile fuses what eager mode runs as many small kernels (every RMSNorm, rotary
embedding and residual add is several), but compiling the whole step traces and compiles
all 30 layers: that is the cold start a run pays. Every layer runs the same code on tensors
of the same shapes; only its weights and its part of the KV cache differ. So one function,
compiled once, serves them all ("regional compilation"):

- the layer comes in as an argument, so its parameters are graph inputs, not constants
  (Dynamo's default for modules since torch 2.5);
- the KV cache comes in as a one-layer view, so the layer's index, which transformers uses
  to pick that layer's slot, never reaches the compiled code; it would be a constant there,
  and each layer would compile a graph of its own.

The rest of the step (mask, rotary tables, final norm, lm_head) stays eager: a few kernels
against the layers' hundreds, and no Python once a CUDA graph replays the step; where the
host runs every step, voxtral_patched compiles the whole step instead. Prefill is not
compiled (its shape changes with every batch's prompt): the layers run as shipped outside
`decoding()`.
"""

from __future__ import annotations

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


def _run_layer(layer: nn.Module, hidden_states: torch.Tensor, kwargs: dict):
    return type(layer).forward(layer, hidden_states, **kwargs)  # the class's forward: not ours below


class CompiledDecodeLayers:
    """Inside `decoding()`, each of the decoder `layers` runs through one compiled function;
    outside, as shipped. `cache_keyword` is the name this transformers gives the cache
    argument ("cache", or "past_key_values" before 5.24)."""

    def __init__(self, layers, cache_keyword: str):
        self.cache_keyword = cache_keyword
        self.active = False
        self.compiled = torch.compile(_run_layer, dynamic=False)
        for index, layer in enumerate(layers):
            # an instance attribute shadows the class's forward, which _run_layer still calls
            layer.forward = partial(self._forward, layer, index)

    def _forward(self, layer: nn.Module, index: int, hidden_states, *args, **kwargs):
        if not self.active or args:
            return type(layer).forward(layer, hidden_states, *args, **kwargs)
        cache = kwargs[self.cache_keyword]
        kwargs = {**kwargs, self.cache_keyword: OneLayerCache(cache.layers[index])}
        return self.compiled(layer, hidden_states, kwargs)

    @contextmanager
    def decoding(self):
        self.active = True
        try:
            yield
        finally:
            self.active = False
