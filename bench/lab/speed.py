"""The Voxtral speed benchmark: stock vs compile vs patched, plus the patch ablation.

    python -m bench.speed                          # on a GPU: full-size random weights
    python -m bench.speed --scale tiny --clip-seconds 5 --batch-sizes 1 2   # a CPU smoke run

Each engine runs on the synthetic dataset (30 s clips by default) with random weights
at every batch size, through the same runner as `python -m bench` (one run folder each,
under --out/runs/synthetic/, see bench.lab.grid: the same command again measures only what
is missing, and --budget-minutes stops before a point that would not fit). Once every
point is measured it prints and writes (speed.md, speed.csv, ablation.md, ablation.csv):

- RTFx with its 95% CI, decode tokens/s, time per decode step, cold start (with what
  Inductor's on-disk cache gave it: compile_cache_cell), peak memory;
- achieved bandwidth in decode: bytes read per decode step / step time, where bytes =
  the decoder's weights (every layer, final norm, lm_head) + the keys and values in use
  (layers x 2 x kv heads x head dim x (mean context + encoder positions) x rows); and its
  share of this device's measured copy bandwidth (read + write bytes of a large device copy);
- the step as a multiple of its ceiling and of its roofline (bench.lab.ceiling: the same
  reads through the same kernels, nothing else; those bytes at the device's stream bandwidth);
- the ablation: voxtral_patched with each patch removed alone, RTFx and its ratio to all on,
  and the cold start (compiled_step's removal shows what its compile costs, where the all-on
  run's compile cache column says it built its graphs).

For voxtral_compile, decode time per step is its whole generate phase divided by its
decode steps (hooks cannot split a compiled region), so its bandwidth is a lower bound.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from bench.analysis.table import markdown
from bench.data.audio import SAMPLE_RATE
from bench.engines import accept_former_name, current_name, engine_class, engine_names
from bench.lab import ceiling
from bench.lab.carried_cache import carried
from bench.lab.evidence import COMPILE_CACHE_NOTE, compile_cache_cell, ordered_phase_frame, phase_means
from bench.lab.folder import DEVICE_FILE, record_command
from bench.lab.grid import Point, Settings, add_arguments, measure, measured_points, model_family, summary_if_done
from bench.lab.plans import SYNTHETIC, plan_device_type, speed_engines, speed_points, streams_a_decoder
from bench.pipeline.cells import table_row
from bench.pipeline.record import Summary, read_batches

INCOMPLETE = 3  # exit status when the time budget ran out before every point was measured


def planned_points(argv: list[str], out: Path | None) -> list[Point]:
    """The points a bench.speed command line asks for (of the folder out, when it has runs)."""
    args = parse(argv, recorded=True)
    ablation_sizes = args.batch_sizes if args.ablation_batch_sizes is None else args.ablation_batch_sizes
    return speed_points(args.engines, args.batch_sizes, ablation_sizes, plan_device_type(args.device, out))


def measured_speed_points(out: Path) -> list[Point]:
    """The speed and ablation points measured under out (whichever commands measured them)."""
    return [p for p in measured_points(out) if p.dataset == SYNTHETIC and (p.without or streams_a_decoder(p.engine))]


def _architecture(folder: Path) -> dict:
    """The model's architecture as the run built it (its config.yaml: architecture, tiny)."""
    model = OmegaConf.load(folder / "config.yaml").model
    arch = OmegaConf.create(model.architecture)
    if model.scale == "tiny":
        arch = OmegaConf.merge(arch, model.tiny)
    return OmegaConf.to_container(arch)


def decoder_shape(point: Point, out: Path):
    """The decoder the point's run streamed, as its engine declares it for the run's architecture."""
    return engine_class(point.engine).decoder_shape(_architecture(point.folder(out)))


def finished(point: Point, out: Path) -> Summary:
    summary = summary_if_done(point, out)
    if summary is None:
        raise SystemExit(f"bench.speed: error: {point.folder(out)} holds no finished run; measure it first")
    return summary


def measure_ceilings(out: Path, points: list[Point]) -> None:
    """The GEMV-only ceiling (bench.lab.ceiling) of every model and batch size the speed runs used,
    on their device and in their dtype, into the folder's ceilings.json (each measured once)."""
    import torch

    from bench.pipeline.runner import DTYPES

    for p in points:
        if p.without or not streams_a_decoder(p.engine) or summary_if_done(p, out) is None:
            continue
        summary = finished(p, out)
        shape = decoder_shape(p, out)
        device, dtype = torch.device(summary.device), DTYPES[summary.dtype]
        ceiling.record(out, summary.model, summary.scale, shape, summary.batch_size, device, dtype)


def weight_bytes(point: Point, out: Path) -> float:
    """Bytes of decoder weights a decode step of this run reads (no KV cache)."""
    summary = finished(point, out)
    return decoder_shape(point, out).weight_values() * (4 if summary.dtype == "float32" else 2)


SPEED_COLUMNS = {  # table_row's name -> the speed table's
    "batch": "batch", "RTFx": "RTFx", "RTFx 95% CI": "RTFx 95% CI", "passes": "passes",
    "tok/s": "decode tok/s", "ms/step": "ms/step",
}  # fmt: skip


def step_bytes(summary: Summary, engine, shape) -> float | None:
    """Bytes a decode step of this run must read (DecoderShape.step_bytes): the weights, and the
    keys and values in use at the mean context of its clips' decode steps (its prompt, then half
    its tokens) over every row of the batch; None for a run that counted no decode steps."""
    if not (summary.decode_step_seconds and summary.decode_steps):
        return None
    clips = max(1, summary.n_utterances)
    mean_clip = round(summary.audio_seconds / clips * SAMPLE_RATE)
    context = engine.context_tokens(mean_clip, summary.dataset.language or "en") + summary.n_tokens / clips / 2
    return shape.step_bytes(summary.batch_size, context, 4 if summary.dtype == "float32" else 2)


def bandwidth_row(point: Point, out: Path, copy_bw: float) -> dict:
    summary = finished(point, out)
    cells = table_row(summary)
    row = {"engine": point.label, **{name: cells[key] for key, name in SPEED_COLUMNS.items()}}
    shape = decoder_shape(point, out)
    n_bytes = step_bytes(summary, engine_class(point.engine), shape)
    step_s = summary.decode_step_seconds
    row["decode GB/s"] = n_bytes / step_s / 1e9 if n_bytes else None
    row["% of copy BW"] = 100 * n_bytes / step_s / copy_bw if n_bytes else None
    ceilings = ceiling.read(out)
    if ceilings:  # measured in the same folder: the step against the practical limit and the bound
        row |= ceiling.step_limits(ceilings, summary, shape, cells["ms/step"], n_bytes)
    row |= {"cold start s": cells["cold start s"], "compile cache": compile_cache_cell(summary)}
    row["peak GiB"] = cells["peak GiB"]
    return row


def ablation_row(point: Point, folder: Path, base: Summary) -> dict:
    s = Summary.read(folder)
    cells = table_row(s)
    return {
        "removed patch": point.without or "(none: all on)",
        "batch": point.batch_size,
        "RTFx": s.rtfx,
        "RTFx 95% CI": cells["RTFx 95% CI"],
        "vs all on": s.rtfx / base.rtfx,
        "decode tok/s": cells["tok/s"],
        "cold start s": cells["cold start s"],
        "compile cache": compile_cache_cell(s),
    }


def _ablation_order(points: list[Point]) -> dict[tuple[str, int], list[Point]]:
    """Per ablated engine and batch size: all patches on first, then each removed patch by name."""
    order = {}
    for engine, b in sorted({(p.engine, p.batch_size) for p in points if p.without}):
        base = next(p for p in points if not p.without and p.engine == engine and p.batch_size == b)
        removed = sorted((p for p in points if p.without and p.engine == engine and p.batch_size == b), key=str)
        order[engine, b] = [base, *sorted(removed, key=lambda p: p.without)]
    return order


def ablation_folders(out: Path, ordered: list[Point]) -> list[Path]:
    """The run folders of one ablation (all on, then each patch removed): the all-on run is the
    one of the lease that measured most of the runs without a patch, kept under earlier-leases/
    when a later lease measured that point again (bench.lab.leases): a run of another lease,
    or of another bench, is no base for them."""
    from collections import Counter

    from bench.lab import leases, sentinel

    removed = [p.folder(out) for p in ordered[1:]]
    counts = Counter(leases.run_lease(out, f, Summary.read(f).environment) for f in removed)
    lease = counts.most_common(1)[0][0] if counts else None
    base = sentinel.measurements(out).get(ordered[0], {}).get(lease) or ordered[0].folder(out)
    return [base, *removed]


def ablation_phase_frame(out: Path, points: list[Point]) -> pd.DataFrame:
    """Where each ablation run's time went: mean milliseconds per timed batch in each phase,
    with the run's decode steps and when it finished. A patch moves the phases it touches;
    a phase that moved in runs whose patch does not touch it shows a difference between
    processes or moments, not a patch's effect."""
    rows = []
    for ordered in _ablation_order(points).values():
        for p, folder in zip(ordered, ablation_folders(out, ordered), strict=True):
            s = Summary.read(folder)
            batches = read_batches(folder)
            row = {
                "removed patch": p.without or "(none: all on)",
                "batch": p.batch_size,
                "finished (UTC)": s.environment["timestamp"][11:19],
                "decode steps": s.decode_steps,
                "tokens": s.n_tokens,
            }
            rows.append({**row, **phase_means(batches)})
    return ordered_phase_frame(rows)


SECTIONS = {"speed": "Speed", "ablation": "Ablation", "ablation_phases": "Ablation by phase"}  # file -> README title


def write_tables(out: Path, points: list[Point]) -> dict[str, str]:
    """speed.md/csv, ablation.md/csv and ablation_phases.md/csv from the measured run folders;
    returns each file's text by name. Rows are ordered by engine and batch (the ablation: all
    on, then each removed patch by name) whatever order the points come in, so every command
    that writes these tables from the same runs writes the same files."""
    device_file = out / DEVICE_FILE
    if not device_file.exists():
        raise SystemExit(f"bench.speed: error: {device_file} is missing (written when the runs are measured)")
    device = json.loads(device_file.read_text())
    copy_bw = device["copy_bandwidth_bytes_per_s"]
    main_points = sorted((p for p in points if not p.without), key=lambda p: (p.engine, p.batch_size))
    models = {p: OmegaConf.load(p.folder(out) / "config.yaml").model for p in main_points}
    speed = pd.DataFrame([bandwidth_row(p, out, copy_bw) for p in main_points])
    names = sorted({m.name for m in models.values()})
    if len(names) > 1:  # which model each row ran, when a folder holds several
        speed.insert(1, "model", [models[p].name for p in main_points])
    ablation_rows, bases_kept = [], []
    for ordered in _ablation_order(points).values():
        folders = ablation_folders(out, ordered)
        base = Summary.read(folders[0])
        ablation_rows += [ablation_row(p, f, base) for p, f in zip(ordered, folders, strict=True)]
        if folders[0] != ordered[0].folder(out):
            bases_kept.append(folders[0].relative_to(out).as_posix())
    ablation = pd.DataFrame(ablation_rows)
    ablated = sorted({engine for engine, _ in _ablation_order(points)})
    if len(ablated) > 1:
        ablation.insert(0, "engine", [p.engine for ordered in _ablation_order(points).values() for p in ordered])

    families = sorted({m.family for m in models.values()})

    def header(of: list[Point]) -> str:
        """The hardware, the models of these runs and how they were measured."""
        configs = [OmegaConf.load(p.folder(out) / "config.yaml") for p in of]
        run_models = sorted({c.model.name for c in configs})
        first = configs[0]
        return (
            f"{device['hardware']}; model{'s' if len(run_models) > 1 else ''} {', '.join(run_models)} "
            f"({first.model.scale}, random weights), synthetic {first.dataset.max_seconds:g} s clips, "
            f"{first.run.repeats} repeats, copy bandwidth {copy_bw / 1e9:.1f} GB/s (read + write)"
        )

    title = f"{families[0].capitalize()} speed" if len(families) == 1 else "Decode speed"

    def note(frame: pd.DataFrame) -> str:
        cache = f"\n{COMPILE_CACHE_NOTE}\n" if frame["compile cache"].notna().any() else ""
        return cache + (f"\n{ceiling.LIMITS_NOTE}\n" if "step / ceiling" in frame else "")

    texts = {"speed": f"# {title}\n\n{header(main_points)}\n\n{markdown(speed)}{note(speed)}"}
    speed.to_csv(out / "speed.csv", index=False)
    if len(ablation):
        phases = ablation_phase_frame(out, points)
        if len(ablated) > 1:
            phases.insert(0, "engine", ablation["engine"])
        ablation_header = header([p for ordered in _ablation_order(points).values() for p in ordered])
        if bases_kept:  # the speed table shows the point's newer run, of another lease
            ablation_header += (f"; all on: the run of the lease that measured the others, {', '.join(bases_kept)} "
                                "(the speed table shows a later lease's)")  # fmt: skip
        texts["ablation"] = (
            f"# {', '.join(ablated)} ablation\n\n{ablation_header}\n\n{markdown(ablation)}{note(ablation)}"
        )
        texts["ablation_phases"] = (
            f"# {', '.join(ablated)} ablation by phase\n\n{ablation_header}; milliseconds per timed batch (mean over "
            f"every pass), decode steps and tokens per pass\n\n{markdown(phases)}"
        )
        ablation.to_csv(out / "ablation.csv", index=False)
        phases.to_csv(out / "ablation_phases.csv", index=False)
    for name, text in texts.items():
        (out / f"{name}.md").write_text(text)
    return texts


def parse(argv: list[str] | None, recorded: bool = False):
    """The command line (recorded: one read back from a folder's commands.txt, whose former
    engine names are mapped without a word)."""
    parser = argparse.ArgumentParser(prog="python -m bench.speed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="voxtral_mini_3b")
    parser.add_argument(
        "--engines",
        nargs="+",
        choices=engine_names(),
        type=current_name if recorded else accept_former_name,
        help="default: every engine of the model's family with a decoder",
    )
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 32])
    parser.add_argument(
        "--ablation-batch-sizes",
        nargs="*",
        type=int,
        default=None,
        help="batch sizes for the ablation (default: --batch-sizes; none: skip it)",
    )
    parser.add_argument("--clip-seconds", type=float, default=30.0)
    parser.add_argument("--out", type=Path, default=None, help="default: runs/speed/<date>_<time>")
    parser.add_argument(
        "--tables-only",
        action="store_true",
        help="write the tables from every speed and ablation run under --out (no measuring)",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    args.engines = args.engines or speed_engines(model_family(args.model))
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    out = args.out or Path("runs") / "speed" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    if args.tables_only:
        points = measured_speed_points(out)
        if not points:
            raise SystemExit(f"bench.speed: error: no measured speed runs under {out / 'runs' / 'synthetic'}")
    else:
        points = planned_points(argv, out)
        out.mkdir(parents=True, exist_ok=True)
        record_command(out, "bench.speed", [*argv, *([] if args.out else ["--out", str(out)])])
        settings = Settings.from_args(args, model=args.model, clip_seconds=args.clip_seconds)
        with carried(args.compile_cache):  # an earlier lease's compiles read back, this one's kept
            if measure(points, out, settings, args.budget_minutes):
                return INCOMPLETE
            measure_ceilings(out, points)
    print("\n".join(write_tables(out, points).values()))
    print(f"run folders and tables: {out}")
    return 0
