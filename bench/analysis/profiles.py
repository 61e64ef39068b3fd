"""Profiled runs read back: what the placeholder merge launched, how many host syncs a
decode step made, and how much of each profiled batch the GPU sat idle in decode
(`python -m bench.report --profiles`). The profiles themselves are made by
bench.pipeline.profile when a run has profile=true."""

from __future__ import annotations

import pandas as pd

from bench.analysis.table import markdown
from bench.pipeline.profile import decode_line, invariants_lines


def _audio_tokens_in_profiled_batch(run) -> int | None:
    """Placeholders merged in the profiled batch (the run's first batch: its longest clips),
    for an engine that merges audio placeholders into its prompt."""
    from bench.data.audio import SAMPLE_RATE
    from bench.engines import engine_class

    durations = run.utterances.duration_s.dropna().sort_values(ascending=False)
    first = durations.head(run.summary.batch_size)
    counts = [engine_class(run.summary.engine).audio_placeholders(round(d * SAMPLE_RATE)) for d in first]
    return None if any(c is None for c in counts) else sum(counts)


def finding(runs) -> tuple[str, dict[str, pd.DataFrame]]:
    """Markdown stating, with the measured counts, what the merge launches, how many host
    syncs a decode step makes and what share of each profiled batch is decode overhead;
    plus each run's phase table, keyed '<engine>_<dataset>_b<batch>'."""
    profiled = [r for r in runs if r.summary.profile and (r.path / "profile_phases.parquet").exists()]
    if not profiled:
        return "No profiled runs (run with profile=true).\n", {}
    tables = {}
    lines = ["# Where the time goes: profiled batches", ""]
    hardware = sorted({r.hardware for r in profiled})
    lines += [f"Hardware: {'; '.join(hardware)}. One warm batch per run, after its timed passes.", ""]
    for run in sorted(profiled, key=lambda r: (r.summary.dataset.name, r.summary.batch_size, r.summary.engine)):
        s, p = run.summary, run.summary.profile
        key = f"{s.engine}_{s.dataset.name}_b{s.batch_size}"
        tables[key] = pd.read_parquet(run.path / "profile_phases.parquet")
        cuda = p["device"].startswith("cuda")
        unit = "kernel launches" if cuda else "innermost CPU operators"
        lines.append(f"## {s.engine}, {s.dataset.name}, batch {s.batch_size}")
        lines.append("")
        tokens = _audio_tokens_in_profiled_batch(run)
        if p.get("merge_kernels") is not None and tokens:
            per_token = p["merge_kernels"] >= tokens
            lines.append(
                f"- Placeholder merge: {p['merge_kernels']:.0f} {unit} for {tokens} audio placeholders "
                f"({'as many launches as placeholders or more' if per_token else 'not one launch per placeholder'})."
            )
        if p.get("decode_host_syncs_per_step") is not None:
            lines.append(decode_line(p, unit))
        if p.get("decode_idle_share_of_batch") is not None:
            lines.append(
                f"- The GPU sat idle {100 * p['decode_idle_share']:.0f}% of the decode phase: "
                f"{100 * p['decode_idle_share_of_batch']:.0f}% of the batch's {p['batch_wall_ms']:.0f} ms "
                "is decode overhead (host time the GPU waited through)."
            )
        lines += invariants_lines(p)
        lines += ["", markdown(tables[key])]
    return "\n".join(lines), tables
