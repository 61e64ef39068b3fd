"""How closely voxtral_patched follows voxtral_stock: first-step logits and tokens.

    python -m bench.agreement                                   # on a GPU: full size, bfloat16
    python -m bench.agreement --scale tiny --dtype float32      # on a CPU: must agree exactly

Both engines are built from the same seeded random weights (or the same pretrained
ones) and transcribe the same clips in the same batches. Per clip it records the
relative error of the patched engine's first-step logits against stock's
(||patched - stock|| / ||stock||, float32 norms over the vocabulary), whether the first
token agrees, the share of generated positions whose token agrees, and the first
position where they part. In float32 they must agree exactly (tests check it); in
bfloat16 different kernel orders round differently, and this says by how much.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import torch

from bench.errors import BenchError
from bench.pipeline.clock import Clock


def token_agreement(a: list[int], b: list[int]) -> tuple[float, int]:
    """(share of positions with the same token, over the longer sequence; first differing position)."""
    longest = max(len(a), len(b))
    same = sum(x == y for x, y in zip(a, b, strict=False))
    first_difference = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    return (same / longest if longest else 1.0), first_difference


def transcribe_with_first_logits(engine, audios, targets, device) -> tuple[list, torch.Tensor]:
    """Transcripts, and the logits of the first generated token (the prefill's), one row per clip."""
    seen: list[torch.Tensor] = []

    def keep_first(module, inputs, output):
        if not seen:
            seen.append(output.detach().float().reshape(output.shape[0], -1, output.shape[-1])[:, -1].clone())

    # both engines end every forward in the model's output projection (Voxtral's lm_head,
    # transformers' Whisper proj_out): its first call is the prefill's
    head = engine.model.lm_head if hasattr(engine.model, "lm_head") else engine.model.proj_out
    handle = head.register_forward_hook(keep_first)
    try:
        with Clock(device) as clock:
            out = engine.transcribe(audios, targets, clock)
    finally:
        handle.remove()
    return out, seen[0][: len(audios)]


def compare(stock, patched, utterances, batch_size: int) -> pd.DataFrame:
    from bench.pipeline.measure import make_batches

    rows = []
    for batch in make_batches(utterances, batch_size):
        audios = [u.audio for u in batch]
        targets = [stock.count_target_tokens(u.reference) for u in batch] if stock.length_matched else None
        want, want_logits = transcribe_with_first_logits(stock, audios, targets, stock.device)
        got, got_logits = transcribe_with_first_logits(patched, audios, targets, patched.device)
        error = (got_logits - want_logits).norm(dim=-1) / want_logits.norm(dim=-1)
        for i, u in enumerate(batch):
            share, first_difference = token_agreement(got[i].tokens, want[i].tokens)
            rows.append(
                {
                    "id": u.id,
                    "duration_s": u.duration_s,
                    "logits_rel_error": float(error[i]),
                    "first_token_equal": bool(got_logits[i].argmax() == want_logits[i].argmax()),
                    "stock_tokens": len(want[i].tokens),
                    "patched_tokens": len(got[i].tokens),
                    "token_agreement": share,
                    "first_difference": first_difference,
                    "identical": got[i].tokens == want[i].tokens,
                }
            )
    return pd.DataFrame(rows)


def headline(frame: pd.DataFrame) -> dict:
    positions = frame[["stock_tokens", "patched_tokens"]].max(axis=1)
    return {
        "clips": len(frame),
        "logits rel. error, median": frame.logits_rel_error.median(),
        "logits rel. error, max": frame.logits_rel_error.max(),
        "first token equal": f"{int(frame.first_token_equal.sum())}/{len(frame)}",
        "token agreement (all positions)": float((frame.token_agreement * positions).sum() / positions.sum()),
        "identical transcripts": f"{int(frame.identical.sum())}/{len(frame)}",
        # over the clips that differ only: an identical clip's "first difference" is its length
        "first difference, median of differing clips (tokens)": (
            frame.first_difference[~frame.identical].median() if not frame.identical.all() else "none"
        ),
    }


def main(argv: list[str] | None = None) -> int:
    try:
        _main(argv)
    except BenchError as err:
        print(f"bench.agreement: error: {err}", file=sys.stderr)
        return 2
    return 0


def _main(argv: list[str] | None) -> None:
    from bench.analysis.table import markdown
    from bench.data import load_utterances
    from bench.engines import engine_class, faster_paths
    from bench.host.environment import environment
    from bench.host.hub_access import go_offline_if_unreachable
    from bench.lab.grid import compose
    from bench.pipeline.runner import resolve_device, resolve_dtype

    fast_engines = list(faster_paths())
    parser = argparse.ArgumentParser(prog="python -m bench.agreement", description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", default=fast_engines[0], choices=fast_engines, help="the faster path to check")
    parser.add_argument("--model", default=None, help="default: the engine's own")
    parser.add_argument("--scale", default="full", choices=["full", "tiny"])
    parser.add_argument("--weights", default="random", choices=["random", "pretrained"])
    parser.add_argument("--dataset", default="sample", help="a conf/dataset name")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--patches", nargs="*", default=None, help="the engine's patches (default: all)")
    parser.add_argument("--compile-scope", default=None, help="engine.compile_scope of the engine (default: its own)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--out", type=Path, default=None, help="writes agreement.md and agreement.csv there")
    args = parser.parse_args(argv)

    stock = faster_paths()[args.engine]
    model = [f"model={args.model}"] if args.model else []
    shared = [*model, f"model.scale={args.scale}", f"model.weights={args.weights}"]
    fast_only = [f"engine.patches=[{','.join(args.patches)}]"] if args.patches is not None else []
    fast_only += [f"engine.compile_scope={args.compile_scope}"] if args.compile_scope else []
    fast_cfg = compose([*shared, f"engine={args.engine}", *fast_only])
    # the stock engine on the very model the fast one runs
    stock_cfg = compose(
        [f"model={fast_cfg.model.name}", *shared[len(model) :], f"engine={stock}", f"dataset={args.dataset}"]
    )
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    offline = go_offline_if_unreachable(stock_cfg)
    if offline:
        print(f"bench.agreement: {offline}", file=sys.stderr)
    utterances = load_utterances(stock_cfg.dataset, args.limit, progress=False)
    engines = []
    for cfg in (stock_cfg, fast_cfg):
        engine = engine_class(cfg.engine.name)(cfg.engine, cfg.model, device, dtype, stock_cfg.dataset.language)
        engine.load()
        engines.append(engine)
    frame = compare(*engines, utterances, args.batch_size)

    compiled = engines[1].report().get("compiled_scope")
    text = (
        f"# {args.engine} vs {stock}\n\n{environment(device)['hardware']}; model {fast_cfg.model.name} "
        f"({args.scale}, {args.weights} weights), {str(dtype).removeprefix('torch.')}, dataset {args.dataset}, "
        f"batch {args.batch_size}, patches: {', '.join(fast_cfg.engine.patches)} "
        f"(compiled: {compiled or 'nothing'})\n\n"
        f"{markdown(pd.DataFrame([headline(frame)]))}"
    )
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "agreement.md").write_text(text + "\n" + markdown(frame))
        frame.to_csv(args.out / "agreement.csv", index=False)
        print(f"per clip: {args.out / 'agreement.csv'}")
