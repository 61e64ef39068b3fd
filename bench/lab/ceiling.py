"""The practical limit of a decode step, measured on the run's own device.

A decode step at small batch streams its decoder's weights: every matrix it multiplies by,
read once. Reading them with the same matrix-product calls (torch.nn.functional.linear on as
many rows as the batch), nothing else, captured as one CUDA graph on a GPU, takes the least
time any engine built on these kernels can take per step. Copy bandwidth is not that limit:
matrix-vector products reach a fraction of it (66% on the H200 at batch 1). bench.speed
measures this once per model, batch size and dtype into the folder's ceilings.json, and its
speed table shows each engine's step as a multiple of it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from bench.engines.base import DecoderShape

CEILINGS_FILE = "ceilings.json"


def matrices(shape: DecoderShape) -> list[tuple[int, int]]:
    """(out, in) of every weight matrix one decode step reads: per layer the attention's q, k,
    v and o, a cross-attention's q and o, the MLP's; then the output projection."""
    hidden, attention = shape.hidden, shape.heads * shape.head_dim
    kv = shape.kv_heads * shape.head_dim
    per_layer = [(attention, hidden), (kv, hidden), (kv, hidden), (hidden, attention)]
    if shape.cross_positions:
        per_layer += [(attention, hidden), (hidden, attention)]
    mlp_in = [(shape.inner, hidden)] * (2 if shape.gated_mlp else 1)
    per_layer += [*mlp_in, (hidden, shape.inner)]
    return per_layer * shape.layers + [(shape.vocab, hidden)]


def measure(shape: DecoderShape, rows: int, device: torch.device, dtype: torch.dtype, replays: int = 50) -> dict:
    """Seconds per step of reading every matrix once, and the bytes read."""
    weights = [torch.randn(o, i, device=device, dtype=dtype) for o, i in matrices(shape)]
    inputs = {w.shape[1]: torch.randn(rows, w.shape[1], device=device, dtype=dtype) for w in weights}

    def step():
        for w in weights:
            torch.nn.functional.linear(inputs[w.shape[1]], w)

    run = step
    if device.type == "cuda":
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            step()  # warm-up off the capture stream, as CUDA graph capture requires
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step()
        run = graph.replay
    for _ in range(5):
        run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(replays):
        run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - start) / replays
    n_bytes = sum(w.numel() * w.element_size() for w in weights)
    return {"seconds": seconds, "bytes": n_bytes, "matrices": len(matrices(shape))}


def key(model: str, scale: str, dtype: str, rows: int) -> str:
    return f"{model}/{scale}/{dtype}/b{rows}"


def read(out: Path) -> dict:
    path = out / CEILINGS_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def record(out: Path, model: str, scale: str, shape: DecoderShape, rows: int, device, dtype: torch.dtype) -> dict:
    """The ceiling for this model, batch size and dtype, measured once per folder (kept after)."""
    ceilings = read(out)
    name = key(model, scale, str(dtype).removeprefix("torch."), rows)
    if name not in ceilings:
        ceilings[name] = measure(shape, rows, device, dtype)
        (out / CEILINGS_FILE).write_text(json.dumps(ceilings, indent=1, sort_keys=True) + "\n")
    return ceilings[name]
