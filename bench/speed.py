"""The Voxtral speed benchmark: stock vs compile vs patched, plus the patch ablation.

    python -m bench.speed                          # on a GPU: full-size random weights
    python -m bench.speed --scale tiny --clip-seconds 5 --batch-sizes 1 2   # a CPU smoke run

Each engine runs on the synthetic dataset (30 s clips by default) with random weights
at every batch size, through the same runner as `python -m bench` (one run folder each,
under --out). It prints and writes (speed.md, speed.csv, ablation.md, ablation.csv):

- RTFx with its 95% CI, decode tokens/s, time per decode step, cold start, peak memory;
- achieved bandwidth in decode: bytes read per decode step / step time, where bytes =
  the decoder's weights (every layer, final norm, lm_head) + the KV cache actually
  attended (layers x 2 x kv heads x head dim x mean context x rows); and its share of
  this device's measured copy bandwidth (read + write bytes of a large device copy);
- the ablation: voxtral_patched with each patch removed alone, RTFx and its ratio to all on.

For voxtral_compile, decode time per step is its whole generate phase divided by its
decode steps (hooks cannot split a compiled region), so its bandwidth is a lower bound.
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import torch

ENGINES = ("voxtral_stock", "voxtral_compile", "voxtral_patched")


def copy_bandwidth(device: torch.device, n_bytes: int = 1 << 30, repeats: int = 10) -> float:
    """Bytes per second moved by a large same-device copy (bytes read + bytes written)."""
    if device.type != "cuda":
        n_bytes = min(n_bytes, 256 << 20)
    src = torch.empty(n_bytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        dst.copy_(src)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    return 2 * n_bytes * repeats / seconds


def decode_bytes_per_step(text: dict, rows: float, context: float, bytes_per_value: int) -> float:
    """Bytes a decode step must read: decoder weights + attended KV cache."""
    hidden, inner, vocab = text["hidden_size"], text["intermediate_size"], text["vocab_size"]
    heads, kv_heads, head_dim = text["num_attention_heads"], text["num_key_value_heads"], text["head_dim"]
    per_layer = (
        hidden * heads * head_dim  # q
        + 2 * hidden * kv_heads * head_dim  # k, v
        + heads * head_dim * hidden  # o
        + 3 * hidden * inner  # gate, up, down
        + 2 * hidden  # two RMSNorms
    )
    weights = text["num_hidden_layers"] * per_layer + hidden + vocab * hidden  # + final norm + lm_head
    kv = text["num_hidden_layers"] * 2 * kv_heads * head_dim * context * rows
    return (weights + kv) * bytes_per_value


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from bench.config import REPO_DIR, register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(REPO_DIR / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def _run(args, engine: str, batch_size: int, out: Path, extra: list[str], label: str) -> dict:
    from bench.runner import run

    n_clips = max(args.min_clips, 2 * batch_size)
    cfg = _compose(
        [
            f"engine={engine}",
            f"model={args.model}",
            "model.weights=random",
            f"model.scale={args.scale}",
            "dataset=synthetic",
            f"dataset.n_clips={n_clips}",
            f"dataset.min_seconds={args.clip_seconds}",
            f"dataset.max_seconds={args.clip_seconds}",
            f"run.batch_size={batch_size}",
            f"run.repeats={args.repeats}",
            "run.warmup_batches=1",
            f"run.progress={str(not args.quiet).lower()}",
            f"device={args.device}",
            f"dtype={args.dtype}",
            *extra,
        ]
    )
    summary = run(cfg, out / f"{label}_b{batch_size}")
    summary["label"] = label
    summary["architecture"] = cfg.model.architecture
    summary["tiny"] = cfg.model.tiny
    return summary


def _bandwidth_row(summary: dict, copy_bw: float, scale: str) -> dict:
    from omegaconf import OmegaConf

    arch = OmegaConf.create(summary["architecture"])
    if scale == "tiny":
        arch = OmegaConf.merge(arch, summary["tiny"])
    text = OmegaConf.to_container(arch.text_config)
    step_s = summary.get("decode_step_seconds")
    row = {
        "engine": summary["label"],
        "batch": summary["batch_size"],
        "RTFx": summary["rtfx"],
        "RTFx 95% CI": "[{:.2f}, {:.2f}]".format(*summary["rtfx_ci"]) if summary["rtfx_ci"] else "-",
        "decode tok/s": summary["decode_tokens_per_s"],
        "ms/step": 1e3 * step_s if step_s else None,
        "decode GB/s": None,
        "% of copy BW": None,
        "cold start s": summary["cold_start_seconds"],
        "peak GiB": summary["peak_gpu_memory_bytes"] / 2**30 if summary["peak_gpu_memory_bytes"] else None,
    }
    if step_s and summary.get("decode_steps"):
        rows = summary["batch_size"]
        prompt = 8 + 375 * 1  # one 30 s chunk per clip; prompt length before decoding starts
        tokens_per_row = summary["n_tokens"] / max(1, summary["n_utterances"])
        context = prompt + tokens_per_row / 2  # mean context over a clip's decode steps
        value_bytes = 4 if summary["dtype"] == "float32" else 2
        bandwidth = decode_bytes_per_step(text, rows, context, value_bytes) / step_s
        row["decode GB/s"] = bandwidth / 1e9
        row["% of copy BW"] = 100 * bandwidth / copy_bw
    return row


def _table(frame: pd.DataFrame) -> str:
    """A Markdown table without the optional tabulate dependency."""

    def cell(value):
        if value is None or (isinstance(value, float) and pd.isna(value)):
            return "n/a"
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def parse(argv: list[str] | None):
    parser = argparse.ArgumentParser(prog="python -m bench.speed", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="voxtral_mini_3b")
    parser.add_argument("--scale", default="full", choices=["full", "tiny"])
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 32])
    parser.add_argument(
        "--ablation-batch-sizes",
        nargs="*",
        type=int,
        default=None,
        help="batch sizes for the ablation (default: --batch-sizes; none: skip it)",
    )
    parser.add_argument("--clip-seconds", type=float, default=30.0)
    parser.add_argument("--min-clips", type=int, default=8, help="clips per run: max(this, 2 x batch size)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--out", type=Path, default=None, help="default: runs/speed/<date>_<time>")
    parser.add_argument("--quiet", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    from bench.engines.voxtral_patched import PATCHES
    from bench.environment import environment
    from bench.runner import resolve_device

    args = parse(argv)
    device = resolve_device(args.device)
    out = args.out or Path("runs") / "speed" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    if out.is_dir() and any(out.iterdir()):
        raise SystemExit(
            f"bench.speed: error: {out} is not empty: give --out a new folder (runs are never overwritten)"
        )
    out.mkdir(parents=True, exist_ok=True)
    copy_bw = copy_bandwidth(device)
    hardware = environment(device)["hardware"]

    summaries = [
        _run(args, engine, batch_size, out, [], engine) for batch_size in args.batch_sizes for engine in args.engines
    ]
    speed = pd.DataFrame([_bandwidth_row(s, copy_bw, args.scale) for s in summaries])

    ablation_sizes = args.batch_sizes if args.ablation_batch_sizes is None else args.ablation_batch_sizes
    ablation_rows = []
    for batch_size in ablation_sizes:
        base = next(
            (s for s in summaries if s["label"] == "voxtral_patched" and s["batch_size"] == batch_size), None
        ) or _run(args, "voxtral_patched", batch_size, out, [], "voxtral_patched")
        ablation_rows.append(
            {
                "removed patch": "(none: all on)",
                "batch": batch_size,
                "RTFx": base["rtfx"],
                "vs all on": 1.0,
                "decode tok/s": base["decode_tokens_per_s"],
            }
        )
        for patch in PATCHES:
            kept = ",".join(p for p in PATCHES if p != patch)
            s = _run(
                args,
                "voxtral_patched",
                batch_size,
                out,
                [f"engine.patches=[{kept}]"],
                f"patched_without_{patch}",
            )
            ablation_rows.append(
                {
                    "removed patch": patch,
                    "batch": batch_size,
                    "RTFx": s["rtfx"],
                    "vs all on": s["rtfx"] / base["rtfx"],
                    "decode tok/s": s["decode_tokens_per_s"],
                }
            )
    ablation = pd.DataFrame(ablation_rows)

    header = (
        f"{hardware}; model {args.model} ({args.scale}, random weights), "
        f"synthetic {args.clip_seconds:g} s clips, copy bandwidth {copy_bw / 1e9:.1f} GB/s (read + write)"
    )
    speed_md = f"# Voxtral speed\n\n{header}\n\n{_table(speed)}\n"
    (out / "speed.md").write_text(speed_md)
    speed.to_csv(out / "speed.csv", index=False)
    print(speed_md)
    if len(ablation):
        ablation_md = f"# voxtral_patched ablation\n\n{header}\n\n{_table(ablation)}\n"
        (out / "ablation.md").write_text(ablation_md)
        ablation.to_csv(out / "ablation.csv", index=False)
        print(ablation_md)
    print(f"run folders and tables: {out}")


if __name__ == "__main__":
    main()
