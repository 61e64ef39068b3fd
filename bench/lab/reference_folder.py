"""A reference folder's README and tables, written from its run folders alone.

README.md gives the verdict (bench.lab.verdict), says which bench measured the runs and
what has changed in their engines since, which lease measured which runs and how far a point
measured on two leases moved (bench.lab.sentinel), then gives the folder's findings.md (when it has
one), lists every command that measured into the folder and the planned runs still missing,
then per dataset a comparison table, the phases, the fastest engines and each faster path's
RTFx ratio to every other engine with a 95% interval over both runs' passes; the load tables
(bench.lab.load_stage); the speed, ablation and ceiling tables; runs
repeated in alternation; the agreement with stock; the profile findings. The same runs give
the same files byte for byte (every interval's draws are seeded).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from packaging.version import Version

from bench import stats
from bench.analysis.table import markdown
from bench.engines import faster_paths
from bench.host.energy import counter_check_line
from bench.lab import leases, sentinel
from bench.lab.folder import DEVICE_FILE, not_measured_lines, recorded_commands
from bench.lab.grid import Point, is_done
from bench.lab.load_stage import load_lines, measured_load_points
from bench.lab.speed import SECTIONS, measured_speed_points, weight_bytes
from bench.lab.verdict import LIMITS, verdict_lines
from bench.pipeline.record import Summary
from bench.stats import PASS_METHOD_WORDS

DATASETS = ("synthetic", "synthetic_librispeech_like", "sample")  # in this order, in the README
# What a person concluded from the tables, put at the top of the README when the folder has
# one; every figure it quotes must appear in the tables bench writes (tests check that).
FINDINGS_FILE = "findings.md"


def ratio_frame(runs, baseline_engine: str, lease_of=None) -> pd.DataFrame:
    """How many times faster baseline_engine is than each other engine, per batch size, with
    its 95% interval: bench.analysis.runs.speed_ratio, the verdict's and recommendation's
    estimator (over the passes of both runs; jointly when they were timed in turns; seeded,
    so the same runs give the same figures). With lease_of (run -> its lease), a ratio of
    runs of two leases names them in its "leases" column (else the column is empty)."""
    from bench.analysis.runs import speed_ratio

    by = {(r.summary.engine, r.summary.batch_size): r for r in runs}
    rows = []
    for (engine, batch), run in sorted(by.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        ours = by.get((baseline_engine, batch))
        if engine == baseline_engine or ours is None:
            continue
        point, low, high = speed_ratio(ours, run)
        row = {"batch": batch, "vs": engine, "speed-up": point, "low": low, "high": high}
        if lease_of:
            pair = lease_of(ours), lease_of(run)
            row["leases"] = f"{pair[0]} vs {pair[1]}" if pair[0] != pair[1] else ""
        rows.append(row)
    return pd.DataFrame(rows, columns=["batch", "vs", "speed-up", "low", "high", *(["leases"] if lease_of else [])])


ACROSS_MARK = "¹"  # a ratio cell of runs of two leases


def ratio_markdown(ratios: pd.DataFrame, baseline_engine: str) -> str:
    """The ratios as a table, batch by engine; a cell of runs of two leases marked, with a line
    under the table naming them."""
    if ratios.empty:
        return ""

    def cell(r) -> str:
        return f"{r['speed-up']:.2f}x [{r.low:.2f}, {r.high:.2f}]" + (ACROSS_MARK if r.get("leases") else "")

    cells = ratios.assign(cell=[cell(r) for _, r in ratios.iterrows()])
    wide = cells.pivot(index="batch", columns="vs", values="cell").reset_index()
    wide.columns = ["batch", *(f"{baseline_engine} vs {c}" for c in wide.columns[1:])]
    text = markdown(wide.fillna("-"))
    pairs = sorted(set(ratios.get("leases", [])) - {""})
    if pairs:
        text += (f"\n{ACROSS_MARK} runs of two leases ({'; '.join(pairs)}): the interval does not hold what moves "
                 "between leases (see Leases above).\n")  # fmt: skip
    return text


def _fastest_lines(frame: pd.DataFrame) -> list[str]:
    lines = []
    for batch, group in frame.groupby("batch"):
        ranked = group.sort_values("RTFx", ascending=False)
        best, second = ranked.iloc[0], ranked.iloc[1] if len(ranked) > 1 else None
        line = f"- batch {batch}: fastest is {best['engine']} at RTFx {best['RTFx']:.1f} {best['RTFx 95% CI']}"
        if second is not None:
            line += f", then {second['engine']} at {second['RTFx']:.1f} {second['RTFx 95% CI']}"
        lines.append(line + ".")
    return lines


def _patches_when_measured(out: Path) -> dict[str, set[str]]:
    """Each engine's patches as its runs here had them (its runs with every patch on): an
    ablation a command asked for is of those, not of a patch added to the engine since."""
    from bench.engines import current_name

    found: dict[str, set[str]] = {}
    for path in (out / "runs").rglob("summary.json"):
        summary = json.loads(path.read_text())  # read as it is: a grid marks a point done by the file alone
        if "_without_" not in path.parent.name and "engine" in summary:
            found.setdefault(current_name(summary["engine"]), set()).update(summary.get("patches") or [])
    return found


def missing_lines(out: Path, plan: list[Point]) -> list[str]:
    """The planned points with no finished run, and why when a run failed (its error.txt)."""
    patches = _patches_when_measured(out)
    plan = [p for p in plan if not p.without or p.engine not in patches or p.without in patches[p.engine]]

    def why(p) -> str:
        if isinstance(p, Point) and (p.folder(out) / "summary.json").exists():  # in the tables, to be taken again
            return f"{p.not_done_because(out)}: its run, in the tables below, is measured again whole on the next call"
        return "not run yet"

    undone = [p for p in plan if not is_done(p, out)]
    missing = [(p.title, p.folder(out), why(p)) for p in undone]
    again = sum(isinstance(p, Point) and (p.folder(out) / "summary.json").exists() for p in undone)
    return not_measured_lines(missing, len(plan), again)


# Accuracy others published for the folder's models (kept by hand, with its source and date):
# shown in a section of its own, labelled, never in a table of bench's measurements.
PUBLISHED_FILE = "published_accuracy.json"


def published_lines(out: Path) -> list[str]:
    """The README's section of published accuracy (nothing when the folder keeps none)."""
    path = out / PUBLISHED_FILE
    if not path.exists():
        return []
    record = json.loads(path.read_text())
    return [
        "## Published accuracy (not measured by bench)",
        "",
        f"{record['title']}. Source: {record['source']}; quoted {record['quoted']} These runs use random "
        "weights, so they measure speed only; bench measures WER with real weights (docs/real-weights.md).",
        "",
        markdown(pd.DataFrame(record["rows"])),
    ]


def resolution_line(runs) -> str:
    """What the folder's runs can tell apart, from their own pass spreads (bench.stats.tells_apart)."""
    timed = [r.summary.repeat_processing_seconds or [] for r in runs]
    spreads = [stats.pass_spread(t) for t in timed if len(t) > 1 and all(t)]
    if not spreads:
        return "What these runs can tell: none has two timed passes, so run-to-run variation is not measured."
    passes = int(np.median([len(t) for t in timed]))
    median, upper = np.percentile(spreads, [50, 75])
    return (
        f"What these runs can tell (docs/statistics.md): their passes lie {100 * median:.1f}% apart at the "
        f"median and {100 * upper:.1f}% at the upper quartile; two runs of {passes} passes are told apart "
        f"when they differ by more than {100 * stats.tells_apart(median, passes):.0f}% at the median's spread, "
        f"{100 * stats.tells_apart(upper, passes):.0f}% at the upper quartile's."
    )


def provenance_lines(runs, out: Path | None = None) -> list[str]:
    """Which bench measured the folder's runs (a commit the run did not record but the folder's
    provenance.json states is said to be stated: bench.lab.leases), and what has changed since
    in the engines they ran and in how passes are timed (bench.engines._history): old figures
    are not today's."""
    from bench.engines._history import changes_since, measured_version

    measured: dict[tuple, int] = {}
    for run in runs:
        env = run.summary.environment
        env = leases.stated_environment(out, run.path, env) if out else env
        key = (measured_version(env), (env.get("git_commit") or "")[:7], bool(env.get("commit_stated")))
        measured[key] = measured.get(key, 0) + 1
    lines = ["## Which bench measured this", ""]
    for (version, commit, stated), n in sorted(measured.items(), key=lambda kv: (kv[0][0] or "", kv[0][1])):
        by = f"bench {version}" if version else "a bench that recorded no version"
        at = f", at commit {commit}" + (f" (stated in {leases.PROVENANCE_FILE})" if stated else "") if commit else ""
        lines.append(f"- {n} run(s) by {by}{at}.")
    renamed = sorted({(r.summary.named_when_measured, r.summary.engine) for r in runs if r.summary.named_when_measured})
    lines += [f"- {name} was named {former} when measured: its folders and commands here say {former}."
              for former, name in renamed]  # fmt: skip
    versions = [version for version, _, _ in measured]
    if None in versions:
        lines += ["", "Some runs name no bench version: what changed since them cannot be listed."]
        return [*lines, ""]
    engines = {run.summary.engine for run in runs}
    changes = [c for c in changes_since(min(versions, key=Version))
               if c.what == "timing" or c.what.split(":")[0] in engines]  # fmt: skip
    if not changes:
        return [*lines, "", "Nothing in these engines or in how their passes are timed has changed since.", ""]
    lines += ["", "Changed since, so these runs show the engines as they were then (the tables below are written "
              "from their raw timings by today's bench):", ""]  # fmt: skip
    lines += [f"- {c.what}, in {c.version} ({c.commit}): {c.change}." for c in changes]
    return [*lines, ""]


COLUMNS = [
    "engine", "batch", "n", "RTFx", "RTFx 95% CI", "passes", "p50 s", "p90 s", "tok/s", "peak GiB", "cold start s",
]  # fmt: skip
ENERGY = ["J/audio h"]  # shown where a run measured it (on a GPU with NVML)


def _intro_lines(out: Path, runs, summary: Summary, plan: list[Point], verdict: list[str]) -> list[str]:
    hardware = sorted({r.hardware for r in runs})
    lines = [
        f"# Reference results: {'; '.join(hardware)}",
        "",
        f"Random {summary.scale}-size weights in {summary.dtype} (speed depends on shapes, not values; "
        "WER is not applicable: length-matched decoding), "
        f"per run {summary.warmup_batches} warm-up batch(es), then every batch timed {summary.repeats} time(s). "
        "RTFx = audio seconds / processing seconds (the median of the timed passes), with "
        f"{PASS_METHOD_WORDS}.",
        "",
        resolution_line(runs),
        "",
        *verdict,  # at the top, under the method
        *published_lines(out),
    ]
    lines += provenance_lines(runs, out)
    device = json.loads((out / DEVICE_FILE).read_text()) if (out / DEVICE_FILE).exists() else {}
    energy = counter_check_line(device.get("energy_counter"))
    lines += [energy, ""] if energy else []
    if (out / FINDINGS_FILE).exists():
        lines += ["## Findings", "", (out / FINDINGS_FILE).read_text().strip(), ""]
    commands = recorded_commands(out, comments=True)
    if commands:
        lines += ["## How it was measured", "", "Every command that measured into this folder, in order:", ""]
        lines += ["```bash", *commands, "```", ""]
        lines += missing_lines(out, plan)
    lines += [
        "Tables written by (they give the same files again from the committed runs):",
        "",
        "```bash",
        f"python -m bench.report --reference {out}",
        f"python -m bench.speed --tables-only --out {out}   # speed.md, ablation.md, ablation_phases.md only",
        f"python -m bench.report --profiles {out}/runs --out {out.parent.parent / 'profiles' / out.name}",
        "```",
        "",
    ]
    return lines


def _speed_section(out: Path) -> tuple[list[str], pd.DataFrame | None]:
    """The speed, ablation and ceiling tables (written beside the README) as README lines, and
    each engine's step against its ceiling (and roofline) per batch size for the verdict (None without a device
    record, a speed run or a ceiling): the speed table's, where bench measured the ceilings in the
    folder (ceilings.json, on the lease of the runs that need them), so the verdict and the speed
    table show one figure; else gemv_ceiling.txt's."""
    from bench.lab import evidence
    from bench.lab.speed import write_tables

    speed = measured_speed_points(out)
    if not (out / DEVICE_FILE).exists() or not speed:
        return [], None
    lines = ["## Decode bandwidth and the patch ablation (synthetic 30 s clips)", ""]
    for name, text in write_tables(out, speed).items():  # each table one level down, under its own title
        lines += [f"### {SECTIONS[name]}\n" + text.split("\n", 1)[1]]
    copy_bw = json.loads((out / DEVICE_FILE).read_text())["copy_bandwidth_bytes_per_s"]
    weights = {p.engine: weight_bytes(p, out) for p in speed if not p.without}
    table = pd.read_csv(out / "speed.csv")
    ceilings = evidence.ceiling_frame(out, table, copy_bw, weights)
    lines += evidence.ceiling_lines(out, ceilings)
    if "step / ceiling" in table:  # bench.lab.ceiling's, measured in this folder: ceiling and roofline
        wide = [table.pivot(index="batch", columns="engine", values=limit) for limit in LIMITS if limit in table]
        for frame, limit in zip(wide, LIMITS, strict=False):
            frame.columns = [f"{engine} {limit}" for engine in frame.columns]
        return lines, pd.concat(wide, axis=1).reset_index()
    return lines, ceilings


def write_folder(out: Path, plan: list[Point]) -> str:
    """README.md and the tables beside it, from the folder alone (and the runs its commands
    planned, to list what is missing); returns the README text."""

    from bench.analysis.comparison import comparison_frame
    from bench.analysis.plots import draw_rtfx_vs_batch, save
    from bench.analysis.profiles import finding
    from bench.analysis.runs import load_runs
    from bench.lab import evidence

    runs = load_runs([str(out / "runs")])
    grid = [r for r in runs if "_without_" not in r.path.name]  # the ablation runs are in the speed tables
    speed_lines, ceilings = _speed_section(out)  # first: the verdict at the top reads the ceilings
    lease_of, moved = leases.lease_of(out), sentinel.movements(out)
    several = len({lease_of(r) for r in runs}) > 1

    def across(a, b) -> str:
        return sentinel.across_note(lease_of(a), lease_of(b), moved)

    lines = _intro_lines(out, runs, grid[0].summary, plan, verdict_lines(runs, ceilings, across))
    lines += sentinel.lease_lines(out, runs)
    fast = [e for e in faster_paths() if any(r.summary.engine == e for r in grid)]
    all_ratios = []
    names = {r.summary.dataset.name for r in grid}
    present = [d for d in DATASETS if d in names] + sorted(names - set(DATASETS))
    for dataset in present:
        runs_here = [r for r in grid if r.summary.dataset.name == dataset]
        frame = comparison_frame(runs_here)
        if several:  # which lease measured each row (bench.lab.leases)
            by = {(r.summary.engine, r.summary.batch_size): lease_of(r) for r in runs_here}
            frame["lease"] = [by[(e, b)] for e, b in zip(frame.engine, frame.batch, strict=True)]
        frame.to_csv(out / f"comparison_{dataset}.csv", index=False)
        plot = f"rtfx_vs_batch_{dataset}.png"
        figure = draw_rtfx_vs_batch(runs_here)
        if not isinstance(figure, str):
            save(figure, out / plot)
        ratios = {engine: ratio_frame(runs_here, engine, lease_of if several else None) for engine in fast}
        for engine, frame_of_engine in ratios.items():
            all_ratios.append(frame_of_engine.assign(dataset=dataset, **({"engine": engine} if len(fast) > 1 else {})))
        clips = ", ".join(f"{n} at batch {b}" for b, n in frame.groupby("batch")["n"].max().items())
        shown = COLUMNS + [c for c in ENERGY if frame[c].notna().any()] + (["lease"] if several else [])
        lines += [f"## {dataset}", "", f"Clips per run: {clips}.", "", markdown(frame[shown])]
        lines += _fastest_lines(frame) + [""]
        lines += ["Milliseconds per timed batch in each phase (mean over every pass):", ""]
        lines += [markdown(evidence.phase_frame(runs_here))]
        for engine, frame_of_engine in ratios.items():
            if not frame_of_engine.empty:
                lines += [f"How many times faster {engine} is (RTFx ratio, 95% CI):", ""]
                lines += [ratio_markdown(frame_of_engine, engine)]
        lines += [figure if isinstance(figure, str) else f"![RTFx vs batch size, {dataset}]({plot})", ""]
    if all_ratios:
        pd.concat(all_ratios).to_csv(out / "ratios.csv", index=False)

    lines += load_lines(out, measured_load_points(out))
    lines += speed_lines
    lines += evidence.repeat_runs_lines(out)
    lines += evidence.agreement_lines(out)
    profiles, _ = finding(runs)
    (out / "profiles.md").write_text(profiles)
    body = profiles.split("\n", 1)[1].strip().replace("\n## ", "\n### ")  # one level down in the README
    lines += ["## Profiles", "", body, ""]
    text = "\n".join(lines).rstrip() + "\n"
    (out / "README.md").write_text(text)
    return text
