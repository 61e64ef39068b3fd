"""The practical limit of a decode step, and its bandwidth bound, measured on the run's own device.

- The ceiling: a decode step at small batch streams its decoder's weights, every matrix it
  multiplies by read once, and (an encoder-decoder) the cross-attention's keys and values over
  the encoder's positions. Doing only that with the same calls (torch.nn.functional.linear on
  as many rows as the batch; per layer one scaled_dot_product_attention of one query per row
  over the encoder's keys and values), captured as one CUDA graph on a GPU, takes the least
  time any engine built on these kernels can take per step. Matrix-vector products on small
  matrices reach a fraction of the memory's bandwidth (Whisper-large-v3's 1,280-wide ones, far
  less than Voxtral's), so the ceiling says how far an engine is from its kernels' limit.
- The roofline: the bytes a step must read (DecoderShape.step_bytes: the weights, and the keys
  and values in use by the real lengths) at the device's stream bandwidth: large matrices
  read by the same matrix product at the same rows, in one graph. What no kernel on this
  device can beat; the ceiling is between it and the engine.

bench.speed measures both once per folder, model, batch size and dtype into ceilings.json;
its speed table shows each engine's step as a multiple of each.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from bench.engines.base import DecoderShape

CEILINGS_FILE = "ceilings.json"
CROSS = "weights+cross_kv"  # what a ceiling of an encoder-decoder reads (older entries: the weights only)
STREAM_BYTES = {"cuda": 2**30, "cpu": 2**28}  # larger than any cache of the device, by far


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


def _seconds_per_call(step, device: torch.device, replays: int) -> float:
    """Seconds per call of step: captured as a CUDA graph on a GPU, as the engines' steps are."""
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
    return (time.perf_counter() - start) / replays


@torch.inference_mode()
def measure(shape: DecoderShape, rows: int, device: torch.device, dtype: torch.dtype, replays: int = 50) -> dict:
    """Seconds per step of reading every matrix once (and the cross-attention's keys and values),
    and the bytes read."""
    weights = [torch.randn(o, i, device=device, dtype=dtype) for o, i in matrices(shape)]
    inputs = {w.shape[1]: torch.randn(rows, w.shape[1], device=device, dtype=dtype) for w in weights}
    cross = []
    if shape.cross_positions:  # per layer: keys and values over the encoder's positions, one query per row
        kv = (rows, shape.kv_heads, shape.cross_positions, shape.head_dim)
        query = torch.randn(rows, shape.heads, 1, shape.head_dim, device=device, dtype=dtype)
        cross = [(torch.randn(kv, device=device, dtype=dtype), torch.randn(kv, device=device, dtype=dtype))
                 for _ in range(shape.layers)]  # fmt: skip

    def step():
        for w in weights:
            torch.nn.functional.linear(inputs[w.shape[1]], w)
        for keys, values in cross:
            torch.nn.functional.scaled_dot_product_attention(query, keys, values)

    seconds = _seconds_per_call(step, device, replays)
    weight_bytes = sum(w.numel() * w.element_size() for w in weights)
    cross_bytes = sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in cross)
    return {
        "seconds": seconds,
        "bytes": weight_bytes + cross_bytes,
        "weight_bytes": weight_bytes,
        "cross_kv_bytes": cross_bytes,
        "matrices": len(weights),
        "reads": CROSS if cross else "weights",
    }


@torch.inference_mode()
def stream(rows: int, device: torch.device, dtype: torch.dtype, replays: int = 20) -> dict:
    """The device's stream bandwidth for a step's reads: square matrices of 4,096 (wide enough
    that one product reads at the memory's pace), STREAM_BYTES of them, read once each by the
    same matrix product at `rows` rows."""
    side = 4096
    size = torch.tensor([], dtype=dtype).element_size() * side * side
    weights = [torch.randn(side, side, device=device, dtype=dtype) for _ in range(STREAM_BYTES[device.type] // size)]
    inputs = torch.randn(rows, side, device=device, dtype=dtype)

    def step():
        for w in weights:
            torch.nn.functional.linear(inputs, w)

    seconds = _seconds_per_call(step, device, replays)
    n_bytes = len(weights) * size
    return {"seconds": seconds, "bytes": n_bytes, "bytes_per_s": n_bytes / seconds}


def key(model: str, scale: str, dtype: str, rows: int) -> str:
    return f"{model}/{scale}/{dtype}/b{rows}"


def stream_key(dtype: str, rows: int) -> str:
    return f"stream/{dtype}/b{rows}"


def read(out: Path) -> dict:
    path = out / CEILINGS_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def complete(entry: dict | None, shape: DecoderShape) -> bool:
    """Whether a recorded ceiling read all a step of this decoder reads at its limit: one measured
    before bench read the cross-attention's keys and values in it is not the ceiling of an
    encoder-decoder (at batch 32, Whisper-large-v3's are five times its weights)."""
    return entry is not None and (not shape.cross_positions or entry.get("reads") == CROSS)


def record(out: Path, model: str, scale: str, shape: DecoderShape, rows: int, device, dtype: torch.dtype) -> dict:
    """The ceiling for this model, batch size and dtype, and the device's stream bandwidth at
    this batch size, each measured once per folder (kept after; measured again where it is not
    complete)."""
    ceilings = read(out)
    name = str(dtype).removeprefix("torch.")
    ceiling_key, bandwidth_key = key(model, scale, name, rows), stream_key(name, rows)
    if not complete(ceilings.get(ceiling_key), shape):
        ceilings[ceiling_key] = measure(shape, rows, device, dtype)
    if bandwidth_key not in ceilings:
        ceilings[bandwidth_key] = stream(rows, device, dtype)
    (out / CEILINGS_FILE).write_text(json.dumps(ceilings, indent=1, sort_keys=True) + "\n")
    return ceilings[ceiling_key]


LIMITS_NOTE = (
    "ceiling: the step's reads (every weight matrix once; an encoder-decoder's cross-attention keys and values) "
    "through the same kernels, nothing else, in one graph; roofline: the bytes a step must read (those, and the "
    "self-attention's keys and values in use) at the device's stream bandwidth (bench.lab.ceiling). n/a: not in "
    "the folder's ceilings.json for that model and batch size, or measured before the ceiling read the "
    "cross-attention (the next call of bench.reference measures it)."
)


def step_limits(ceilings: dict, summary, shape: DecoderShape, ms_per_step: float | None, n_bytes: float | None) -> dict:
    """A run's decode step (ms_per_step, reading n_bytes) against the ceiling of its model and
    batch size and against its roofline, from a folder's ceilings.json (None where not measured)."""
    limit = ceilings.get(key(summary.model, summary.scale, summary.dtype, summary.batch_size))
    limit = limit if complete(limit, shape) else None  # one missing the cross-attention's reads: none
    bandwidth = ceilings.get(stream_key(summary.dtype, summary.batch_size))
    cells = {"ceiling ms/step": 1e3 * limit["seconds"] if limit else None}
    cells["step / ceiling"] = ms_per_step / cells["ceiling ms/step"] if limit and ms_per_step else None
    roofline = 1e3 * n_bytes / bandwidth["bytes_per_s"] if bandwidth and n_bytes else None
    cells["roofline ms/step"] = roofline
    cells["step / roofline"] = ms_per_step / roofline if roofline and ms_per_step else None
    return cells
