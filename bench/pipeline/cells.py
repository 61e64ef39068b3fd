"""A run as table cells: every figure a table may show about a run, computed and named in
one place (table_row), with the cells that need a rule (cost, patches, passes, compiles)."""

from __future__ import annotations

from bench import stats
from bench.host.busy import is_busy
from bench.pipeline.record import Summary

AUDIO_HOURS_PRICED = 1000  # cost is given per this many hours of audio


def cost_per_audio_hours(rtfx: float | None, hourly_price: float | None) -> float | None:
    """What transcribing AUDIO_HOURS_PRICED hours of audio costs at that speed: the machine
    runs 1/RTFx hours per audio hour, at hourly_price an hour."""
    if rtfx is None or hourly_price is None or not rtfx:
        return None
    return hourly_price * AUDIO_HOURS_PRICED / rtfx


def cost_interval(rtfx_ci: list[float] | None, hourly_price: float | None) -> list[float] | None:
    """The cost's 95% interval, from RTFx's (the faster end of RTFx is the cheaper end of cost)."""
    if not rtfx_ci or hourly_price is None or not min(rtfx_ci):
        return None
    return [cost_per_audio_hours(rtfx_ci[1], hourly_price), cost_per_audio_hours(rtfx_ci[0], hourly_price)]


def peak_memory_bytes(summary: Summary) -> int | None:
    """What tables show as peak memory: on a GPU torch's peak allocation on the device, on a
    CPU the process's peak resident set (which also holds Python, the libraries and the data)."""
    return summary.peak_gpu_memory_bytes or summary.peak_resident_memory_bytes


def table_row(summary: Summary, hourly_price: float | None = None) -> dict:
    """Everything a table may show about a run, under the names tables use. Each table picks
    its columns from this one row, so a figure is computed and named in one place.
    hourly_price prices the run at another rate than the one it was run with (bench.report)."""
    s = summary
    wer = s.wer_details or {}
    price = hourly_price if hourly_price is not None else s.gpu_hourly_price
    cost_ci = cost_interval(s.rtfx_ci, price)
    return {
        "engine": s.engine,
        "patches": patches_cell(s),
        "weights": s.weights,
        "model": f"{s.model} ({s.scale})",
        "dtype": s.dtype,
        "dataset": s.dataset.name,
        "batch": s.batch_size,
        "n": s.n_ok,
        "failed": s.n_failed,
        "audio s": s.audio_seconds,
        "WER": s.wer,
        "S/D/I": f"{wer['substitutions']}/{wer['deletions']}/{wer['insertions']}" if wer else "-",
        "RTFx": s.rtfx,
        "RTFx 95% CI": rtfx_ci_cell(s),
        "passes": passes_cell(s),
        "RTFx low": s.rtfx_ci[0] if s.rtfx_ci else None,  # the interval as numbers, for plots
        "RTFx high": s.rtfx_ci[1] if s.rtfx_ci else None,
        "p50 s": s.latency_p50,
        "p90 s": s.latency_p90,
        "p99 s": s.latency_p99,
        "tok/s": s.decode_tokens_per_s,
        "ms/step": 1e3 * s.decode_step_seconds if s.decode_step_seconds else None,
        "peak GiB": peak_memory_bytes(s) / 2**30 if peak_memory_bytes(s) else None,
        "load s": s.load_seconds,
        "cold start s": s.cold_start_seconds,
        "TTFT p50 s": (s.online or {}).get("ttft", {}).get("p50"),
        "J/audio h": s.energy_j_per_audio_hour,
        "cost/1k audio h": cost_per_audio_hours(s.rtfx, price),
        "cost/1k audio h 95% CI": f"[{cost_ci[0]:,.2f}, {cost_ci[1]:,.2f}]" if cost_ci else "-",
        "compiled while timed": compiled_while_timed_cell(s),
        "host": "busy" if is_busy(s) else None,  # measured while other processes used the machine
        "hardware": s.hardware,
    }


def timed_compile_problems(summary: Summary) -> list[str]:
    """What this run compiled or captured while a pass was timed, in words (empty: nothing, so
    its timings are of the engine's steady state). Reaching Dynamo's recompile limit counts too:
    past it a shape runs eager, a different engine, and no compile shows in the count."""
    problems = []
    if summary.compiles_while_timed:
        problems.append(f"compiled {summary.compiles_while_timed} graph(s)")
    if summary.captures_while_timed:
        problems.append(f"captured {summary.captures_while_timed} CUDA graph(s)")
    if summary.recompile_limit_hits:
        problems.append(f"reached Dynamo's recompile limit {summary.recompile_limit_hits} time(s) (a shape ran eager)")
    return problems


def compiled_while_timed_cell(summary: Summary) -> str | None:
    """The table cell: None (column left out) when nothing was compiled or captured while timed."""
    s = summary
    counts = [(s.compiles_while_timed, "compiles"), (s.captures_while_timed, "captures"),
              (s.recompile_limit_hits, "eager past limit")]  # fmt: skip
    cell = ", ".join(f"{n} {what}" for n, what in counts if n)
    return cell or None


def inert_patches(summary: Summary) -> list[str]:
    """Patches the engine was given but did not apply on this host (cuda_graph on a CPU): an
    engine reports each such patch as <patch>_active false."""
    report = summary.engine_report or {}
    return [p for p in summary.patches if report.get(f"{p}_active") is False]


def patches_cell(summary: Summary) -> str:
    """The patches as a table shows them: "all", or "all but" the ones off, where the run
    recorded the engine's whole list (summary.json keeps both lists), else each name; a patch
    the engine did not apply on this host is marked inert."""
    inert = inert_patches(summary)
    on, every = summary.patches, summary.engine_patches
    if not on:
        return "-"
    inert_note = f" ({', '.join(inert)} inert)" if inert else ""
    if every and set(on) <= set(every) and len(every) - len(on) < len(on):
        off = [p for p in every if p not in on]
        return ("all" if not off else f"all but {', '.join(off)}") + inert_note
    return ", ".join(f"{p} (inert)" if p in inert else p for p in on)


def energy_reasons(summaries: list[Summary]) -> list[str]:
    """Why runs have no energy figure, each reason once (a CPU run: no board counter)."""
    return sorted(
        {
            s.energy_note or "not recorded (a run from before bench read energy)"
            for s in summaries
            if s.energy_j_per_audio_hour is None
        }
    )


def passes_cell(summary: Summary) -> str:
    """How many passes were timed and how far apart they lie (bench.stats.pass_spread, the
    spread of their RTFs in %): what the RTFx interval is made of."""
    per_pass = summary.repeat_processing_seconds or []
    spread = stats.pass_spread(per_pass) if all(per_pass) else None
    return f"{len(per_pass)}, ±{100 * spread:.1f}%" if spread is not None else str(len(per_pass) or "-")


def rtfx_ci_cell(summary: Summary) -> str:
    """A run's RTFx 95% interval as a table cell."""
    ci = summary.rtfx_ci
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "-"
