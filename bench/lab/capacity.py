"""How a decode step's time follows the static cache: its capacity at fixed content, and its
content at fixed capacity (python -m bench.capacity).

A static cache is sized for the longest transcript a batch shape may write (Voxtral: 16 +
chunks x (375 + max_new_tokens) slots; Whisper: 4 + max_new_tokens). A step whose attention
reads the whole capacity costs what the cache could hold, not what it holds; one that reads
what is in use costs the same at any capacity. Each row here is one engine built at one
capacity (engine.max_new_tokens), fed the same clips with the same forced transcript lengths
(length-matched decoding), warmed once, then timed: milliseconds per decode step, the median
over passes, then over builds (each row built --builds times, in rounds: a build moves a
step by more than its passes do; the spread is half the range over builds). Random weights;
on the CPU at tiny scale by default, where it takes minutes.

    python -m bench.capacity                                 # every faster path, tiny, CPU
    python -m bench.capacity --without attention_window       # the same with a patch off
"""

from __future__ import annotations

import argparse
import statistics
import sys

import numpy as np
import pandas as pd
import torch

from bench.analysis.table import markdown
from bench.engines import engine_class, faster_paths
from bench.lab.grid import compose
from bench.pipeline.clock import Clock

BUDGETS = (100, 1000, 4000)  # engine.max_new_tokens: the cache's capacity grows with it
TOKENS = (32, 160, 400)  # each clip's forced transcript length: the cache's content grows with it


def build(engine: str, scale: str, device: str, max_new_tokens: int, without: str | None):
    overrides = [f"engine={engine}", "model.weights=random", f"model.scale={scale}",
                 f"engine.max_new_tokens={max_new_tokens}"]  # fmt: skip
    cls = engine_class(engine)
    if without:
        overrides.append(f"engine.patches=[{','.join(p for p in cls.PATCHES if p != without)}]")
    cfg = compose(overrides)
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    built = cls(cfg.engine, cfg.model, torch.device(device), dtype, "en")
    built.load()
    return built


def ms_per_step(engine, rows: int, tokens: int, passes: int) -> tuple[float, int]:
    """Median milliseconds per decode step over `passes` timed calls (after one untimed), and
    the cache's slots in use at the middle of decoding."""
    audio = [np.random.default_rng(row).standard_normal(16_000 * 5).astype(np.float32) * 0.1 for row in range(rows)]
    engine.plan([[len(a) for a in audio]])
    times, steps = [], 0
    for k in range(passes + 1):
        with Clock(engine.device) as clock:
            engine.transcribe(audio, [tokens] * rows, clock)
        steps = clock.counts["decode_steps"]
        if k:  # the first call compiles and captures
            times.append(1e3 * clock.phases["decode"] / steps)
    content = engine.context_tokens(len(audio[0])) + tokens // 2
    return statistics.median(times), content


def _configs(engines, without: str | None) -> list[tuple[str, str, int, int]]:
    """(engine, what varies, max_new_tokens, tokens) of every row, in the table's order."""
    configs = []
    for name in engines:
        if without and without not in engine_class(name).PATCHES:
            continue
        configs += [(name, "capacity", budget, TOKENS[0]) for budget in BUDGETS]  # capacity grows, content fixed
        configs += [(name, "content", BUDGETS[-1], tokens) for tokens in TOKENS]  # capacity fixed, content grows
    return configs


def measure(engines, scale: str, device: str, rows: int, passes: int, without: str | None, builds: int) -> pd.DataFrame:
    """Each row built `builds` times, every row once per round (a build's memory and compiled
    code move a step by more than its passes do): its median over builds, and their spread."""
    configs = _configs(engines, without)
    times: dict[tuple, list[float]] = {config: [] for config in configs}
    cells: dict[tuple, tuple[int, int]] = {}
    for _ in range(builds):
        for config in configs:
            name, _, budget, tokens = config
            engine = build(name, scale, device, budget, without)
            ms, content = ms_per_step(engine, rows, tokens, passes)
            times[config].append(ms)
            cells[config] = engine.decoder.cache_len, content
    table = []
    for config in configs:
        name, vary, _, _ = config
        median = statistics.median(times[config])
        spread = (max(times[config]) - min(times[config])) / median
        table.append({"engine": name, "vary": vary, "capacity": cells[config][0], "content": cells[config][1],
                      "ms/step": median, "spread over builds": f"±{50 * spread:.1f}%"})  # fmt: skip
    frame = pd.DataFrame(table)
    first = frame.groupby(["engine", "vary"])["ms/step"].transform("first")
    frame["vs first row"] = frame["ms/step"] / first
    return frame


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", nargs="+", default=sorted(faster_paths()), help="default: every faster path")
    parser.add_argument("--scale", default="tiny", choices=["tiny", "full"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rows", type=int, default=4, help="clips per batch (default 4)")
    parser.add_argument("--passes", type=int, default=5, help="timed calls per build (after one untimed)")
    parser.add_argument("--builds", type=int, default=3, help="times each row's engine is built and timed")
    parser.add_argument("--without", default=None, help="a patch switched off in every row")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    frame = measure(args.engines, args.scale, args.device, args.rows, args.passes, args.without, args.builds)
    setting = f"every patch on but {args.without}" if args.without else "every patch on"
    print(f"# Decode step against the static cache: {args.scale} scale, {args.device}, {args.rows} rows, {setting}; "
          f"{args.builds} builds of {args.passes} timed calls\n")  # fmt: skip
    print(markdown(frame))
    return 0
