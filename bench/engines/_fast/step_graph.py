"""cuda_graph: the fast-decode core's step captured once per batch shape and attention window,
then replayed.

A replay launches every kernel of the step at once, with none of its Python: what a step at
small batch costs on the host (hundreds of kernel launches) goes. A graph holds the addresses
of the tensors it captured, so its inputs are copied into static buffers before each replay and
the cache and mask buffer it reads are reset in place between batches (decoder.py).
"""

from __future__ import annotations

import time

import torch

from bench.engines.base import compile_seconds
from bench.pipeline.clock import synchronize


def captured(decoder, token, position, cache_position, size: int):
    """Capture the decode step on CUDA once per shape and attention window (`size` slots:
    the capacity without attention_window); each replay reads and writes fixed buffers."""
    if size in decoder.state.graphs:
        return decoder.state.graphs[size]
    began, compiling = time.perf_counter(), compile_seconds()
    static_token, static_position = token.clone(), position.clone()
    static_cache_position = cache_position.clone() if cache_position is not None else None
    valid = decoder.state.valid[:, :size]  # a view: the graph reads the buffer the loop writes

    def step():
        return decoder.step(static_token, static_position, static_cache_position, valid)

    # Warm up on a side stream with the real first step's inputs. The static cache
    # advances its own position counter (a device tensor) on every write, so step it
    # back afterwards: the replay of this very step then writes the same slot again.
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        step()
    torch.cuda.current_stream().wait_stream(side)
    for layer in decoder.model.self_attention_layers(decoder.state.cache):
        layer.cumulative_length.sub_(1)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_logits = step()

    def replay(token, position, cache_position):
        static_token.copy_(token)
        static_position.copy_(position)
        if static_cache_position is not None:
            static_cache_position.copy_(cache_position)
        graph.replay()
        return static_logits

    decoder.state.graphs[size] = replay
    decoder.captures += 1
    synchronize(decoder.device)  # the side stream's run and the capture done: their time, not the next step's
    decoder.capture_seconds += time.perf_counter() - began - (compile_seconds() - compiling)
    return replay
