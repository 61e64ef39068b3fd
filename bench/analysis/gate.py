"""python -m bench.gate: fail a change that made an engine slower, beyond noise.

    python -m bench.gate --write-baseline RUNS... --out results/baselines/my-gpu.json
    (several runs of the same measurement are pooled into one baseline entry)
    python -m bench.gate --baseline results/baselines/my-gpu.json --candidate RUNS...

Two checks, each on the raw per-batch timings kept in every run folder:

- RTF against the baseline (same engine, settings and data): the 95% interval of candidate
  RTF / baseline RTF over the timed passes of each (bench.stats.PASS_METHOD: Student's t on
  the passes, so a pass that ran slow counts as the run-to-run variation it is). A
  regression is that interval wholly above 1 + --threshold: slower by more than the
  threshold, and by more than the noise. Needs the same hardware fingerprint
  (environment.hardware) unless --force.
- Same-run ratios (every faster path's speed-up over its stock engine, best measured in turns
  with run.paired_with, the two drawn jointly pass by pass so common drift cancels): a
  regression is a 95% interval of candidate / baseline ratio wholly below 1 - --ratio-threshold.
  A speed-up moves with the machine too (docs/gate.md): measure its baseline on the runner
  that gates (--ratios-only skips the absolute RTF check and its fingerprint).
- p90 latency against the baseline, for bench.load runs (bench.analysis.gate_latency).

Runs that compiled or captured while a pass was timed are refused (--allow-compiles to gate
on them anyway). Under its table the gate says, per check, the smallest slowdown it could
fail on with this spread, and warns when that is over twice the check's limit
(bench.analysis.gate_verdicts).

Exit status: 0 pass, 1 regression (a table says what and by how much), 2 refused.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from bench.analysis.gate_latency import latencies, latency_row
from bench.analysis.gate_verdicts import CATCHES, blind_checks, catches_above, catches_below, verdicts
from bench.analysis.runs import Run, closest_miss, joint_rtf_samples, load_runs, matching, measured_in_turns, rtf_point
from bench.analysis.table import markdown
from bench.errors import BenchError
from bench.host.busy import busy_notes
from bench.pipeline.cells import timed_compile_problems
from bench.stats import SPEED_DRAWS


def default_ratios() -> tuple[str, ...]:
    """Every faster path over the engine it speeds up (Engine.STOCK), as numerator/denominator."""
    from bench.engines import faster_paths

    return tuple(f"{fast}/{stock}" for fast, stock in faster_paths().items())


def _group(run: Run, legacy: bool = False) -> list:
    """What two engines must share for their ratio to mean something (legacy: as a baseline
    written before runs had a fingerprint of their utterances keyed it)."""
    s = run.summary
    data = run.legacy_dataset_key if legacy else run.dataset_key
    return [s.model, s.weights, s.scale, s.dtype, s.batch_size, *data]


def _raw(run: Run) -> dict:
    """A run's timed batches as the baseline keeps them: with their pass (repeat), so that the
    baseline's RTF is the same estimator as the candidate's (the median over passes)."""
    b = run.batches
    repeat = b["repeat"].tolist() if "repeat" in b else [0] * len(b)
    return {"repeat": repeat, "processing_s": b.processing_s.tolist(), "audio_s": b.audio_s.tolist()}


def _frame(raw: dict) -> pd.DataFrame:
    return pd.DataFrame(raw)


def _ratio_entries(runs: list[Run], pairs: tuple[str, ...] | None) -> list[dict]:
    entries = []
    for pair in default_ratios() if pairs is None else pairs:
        numerator, denominator = pair.split("/")
        for num in (r for r in runs if r.summary.engine == numerator):
            partners = [r for r in runs if r.summary.engine == denominator and _group(r) == _group(num)]
            # a partner measured in turns with this run is the one to pair it with
            partners.sort(key=lambda r: not measured_in_turns(num, r))
            for den in partners[:1]:
                # batch i of one pairs with batch i of the other only if both have all their batches
                raw_num, raw_den = _raw(num), _raw(den)
                paired = measured_in_turns(num, den) and len(raw_num["audio_s"]) == len(raw_den["audio_s"])
                entries.append(
                    {
                        "pair": pair,
                        "batch_size": num.summary.batch_size,
                        "group": _group(num),
                        "legacy_group": _group(num, legacy=True),
                        "ratio": _rtf(raw_den) / _rtf(raw_num),  # speed-up of numerator
                        "paired": paired,
                        "runs": (str(num.path), str(den.path)),
                        "numerator": raw_num,
                        "denominator": raw_den,
                    }
                )
    return entries


def _pooled(raw: list[dict]) -> dict:
    """Several runs' batches as one run's, each run's passes kept apart (numbered on): a
    baseline from a few runs sits in the middle of their spread, where one run may sit at its
    edge, and its RTF is still the median over passes."""
    pooled: dict[str, list] = {"repeat": [], "processing_s": [], "audio_s": []}
    for r in raw:
        first = len(set(pooled["repeat"]))
        passes = {p: first + i for i, p in enumerate(dict.fromkeys(r.get("repeat", [0] * len(r["audio_s"]))))}
        pooled["repeat"] += [passes[p] for p in r.get("repeat", [0] * len(r["audio_s"]))]
        pooled["processing_s"] += r["processing_s"]
        pooled["audio_s"] += r["audio_s"]
    return pooled


def _rtf(raw: dict) -> float:
    return rtf_point(_frame(raw))


def write_baseline(
    runs: list[Run], out: Path, pairs: tuple[str, ...] | None = None, allow_compiles: bool = False
) -> dict:
    """baseline_of(runs) written to `out` as JSON."""
    baseline = baseline_of(runs, pairs, allow_compiles)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(baseline, indent=1) + "\n")
    return baseline


def baseline_of(runs: list[Run], pairs: tuple[str, ...] | None = None, allow_compiles: bool = False) -> dict:
    """A baseline from `runs`; repeated runs of one measurement (same key, or same ratio
    group) are pooled batch by batch into one entry."""
    refuse_compiled(runs, allow_compiles)
    hardware = sorted({r.hardware for r in runs})
    if len(hardware) > 1:
        raise BenchError(f"a baseline holds runs of one hardware class, these have: {'; '.join(hardware)}")
    by_key: dict[tuple, list[Run]] = {}
    for run in runs:
        by_key.setdefault(run.key, []).append(run)
    by_group: dict[tuple, list[dict]] = {}
    for entry in _ratio_entries(runs, pairs):
        by_group.setdefault((entry["pair"], json.dumps(entry["group"])), []).append(entry)
    entries = []
    for same in by_group.values():
        # measured in turns: pooled entry by entry, so batch i of one side still pairs with batch i
        # of the other; otherwise each distinct run once (several runs may share one partner)
        paired = all(e["paired"] for e in same)
        if paired:
            numerators, denominators = [e["numerator"] for e in same], [e["denominator"] for e in same]
        else:
            numerators = list({e["runs"][0]: e["numerator"] for e in same}.values())
            denominators = list({e["runs"][1]: e["denominator"] for e in same}.values())
        numerator, denominator = _pooled(numerators), _pooled(denominators)
        entries.append(
            {
                "pair": same[0]["pair"],
                "group": same[0]["group"],
                "ratio": _rtf(denominator) / _rtf(numerator),
                "paired": paired,
                "n_runs": len(numerators),
                "numerator": numerator,
                "denominator": denominator,
            }
        )
    return {
        "hardware": hardware[0],
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": runs[0].summary.environment.get("git_commit"),
        "runs": [
            {
                "key": list(key),
                "engine": key[0],
                "rtf": _rtf(raw := _pooled([_raw(r) for r in same])),
                "n_runs": len(same),
                "batches": raw,
                **({"latency_s": sum((latencies(r) for r in same), [])} if same[0].summary.online else {}),
            }
            for key, same in by_key.items()
        ],
        "ratios": entries,
        "busy_host": busy_notes([run.summary for run in runs]),  # its runs timed on a busy host, if any
    }


def busy_lines(candidate: list[Run], baseline: dict) -> list[str]:
    """Beside the verdict: each run of either side timed on a busy host (bench.host.busy), whose
    slowdown or speed-up may be the host's. The baseline keeps its runs' sentences."""
    lines = [f"candidate {line}: its figures, and this verdict, may be the host's, not the code's"
             for line in busy_notes([run.summary for run in candidate])]  # fmt: skip
    return lines + [f"baseline {line}: the verdict compares against the host's figures" for line in
                    baseline.get("busy_host", [])]  # fmt: skip


def refuse_compiled(runs: list[Run], allowed: bool) -> None:
    """A run that compiled or captured while timed measured that work: not gated on unless allowed."""
    found = [(run, timed_compile_problems(run.summary)) for run in runs]
    bad = [f"{run.path} ({' and '.join(problems)})" for run, problems in found if problems]
    if bad and not allowed:
        raise BenchError(
            "these runs compiled or captured while a pass was timed, so their timings include that work: "
            + "; ".join(bad) + ". Measure them again, or pass --allow-compiles to gate on them anyway"
        )  # fmt: skip


def _ratio_change_samples(candidate: dict, base: dict, rng) -> np.ndarray:
    """Draws of candidate speed-up / baseline speed-up (bench.stats.PASS_METHOD). Each side's two
    engines are drawn jointly when they were timed in turns (bench.analysis.runs.joint_rtf_samples),
    so drift that slowed both alike cancels in its ratio; candidate and baseline were measured
    apart, and are drawn apart."""
    c_num, c_den = joint_rtf_samples([_frame(candidate["numerator"]), _frame(candidate["denominator"])],
                                     SPEED_DRAWS, rng, candidate["paired"])  # fmt: skip
    b_num, b_den = joint_rtf_samples([_frame(base["numerator"]), _frame(base["denominator"])],
                                     SPEED_DRAWS, rng, base.get("paired", False))  # fmt: skip
    return (c_den / c_num) / (b_den / b_num)


def gate(
    baseline: dict,
    candidate: list[Run],
    threshold: float = 0.10,
    ratio_threshold: float = 0.10,
    force: bool = False,
    ratios_only: bool = False,
    pairs: tuple[str, ...] | None = None,
    seed: int = 0,
    latency_threshold: float = 0.10,
    allow_compiles: bool = False,
) -> tuple[pd.DataFrame, bool]:
    """Rows of what was compared, and whether anything regressed."""
    refuse_compiled(candidate, allow_compiles)
    rng = np.random.default_rng(seed)
    rows = []
    if not ratios_only:
        hardware = sorted({r.hardware for r in candidate})
        if hardware != [baseline["hardware"]] and not force:
            raise BenchError(
                f"baseline was measured on {baseline['hardware']!r}, the candidate on {'; '.join(hardware)!r}: "
                "absolute RTF is comparable only on the same hardware. Use a baseline of this hardware, gate "
                "same-run ratios only (--ratios-only), or --force"
            )
        by_key = {tuple(entry["key"]): entry for entry in baseline["runs"]}
        for run in candidate:
            entry = matching(run, by_key)
            if entry is None:
                continue
            base_batches = _frame(entry["batches"])
            # the same estimator on both sides, for the point and for every draw (measured apart)
            base_rtf, cand_rtf = rtf_point(base_batches), rtf_point(run.batches)
            cand, base = joint_rtf_samples([run.batches, base_batches], SPEED_DRAWS, rng)
            low, high = np.percentile(cand / base, [2.5, 97.5])
            rows.append(
                {
                    "check": "RTF vs baseline",
                    "what": f"{run.summary.engine} b{run.summary.batch_size}",
                    "baseline": 1 / base_rtf,
                    "candidate": 1 / cand_rtf,
                    "unit": "RTFx",
                    "slower by %": 100 * (cand_rtf / base_rtf - 1),
                    "95% CI %": f"[{100 * (low - 1):+.1f}, {100 * (high - 1):+.1f}]",
                    "limit %": f"+{100 * threshold:.0f}",
                    "verdict": "REGRESSION" if low > 1 + threshold else "ok",
                    CATCHES: catches_above(cand_rtf / base_rtf, low, threshold),
                }
            )
            if run.summary.online and entry.get("latency_s"):
                rows.append(latency_row(run, entry, latency_threshold, rng))
    base_ratios = {(e["pair"], json.dumps(e["group"])): e for e in baseline["ratios"]}
    for entry in _ratio_entries(candidate, pairs):
        base = base_ratios.get((entry["pair"], json.dumps(entry["group"]))) or base_ratios.get(
            (entry["pair"], json.dumps(entry["legacy_group"]))
        )
        if base is None:
            continue
        change = _ratio_change_samples(entry, base, rng)
        low, high = np.percentile(change, [2.5, 97.5])
        base_ratio = _rtf(base["denominator"]) / _rtf(base["numerator"])  # an older baseline's "ratio" was sum/sum
        rows.append(
            {
                "check": "same-run ratio",
                "what": f"{entry['pair']} b{entry['batch_size']}",
                "baseline": base_ratio,
                "candidate": entry["ratio"],
                "unit": "speed-up",
                "slower by %": 100 * (1 - entry["ratio"] / base_ratio),
                "95% CI %": f"[{100 * (1 - high):+.1f}, {100 * (1 - low):+.1f}]",
                "limit %": f"+{100 * ratio_threshold:.0f}",
                "verdict": "REGRESSION" if high < 1 - ratio_threshold else "ok",
                CATCHES: catches_below(entry["ratio"] / base_ratio, high, ratio_threshold),
            }
        )
    if not rows:
        misses = [] if ratios_only else [closest_miss(run, baseline["runs"]) for run in candidate]
        raise BenchError("nothing to compare: no candidate run or ratio matches the baseline"
                         + "".join(f"\n  {miss}" for miss in misses if miss))  # fmt: skip
    table = pd.DataFrame(rows)
    return table, bool((table.verdict == "REGRESSION").any())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--write-baseline", nargs="+", metavar="RUNS", help="write a baseline from these runs")
    parser.add_argument("--out", type=Path, help="where --write-baseline writes")
    parser.add_argument("--baseline", type=Path)
    parser.add_argument("--candidate", nargs="+", metavar="RUNS")
    parser.add_argument("--threshold", type=float, default=0.10, help="allowed RTF slowdown (fraction)")
    parser.add_argument("--ratio-threshold", type=float, default=0.10, help="allowed loss of a same-run speed-up")
    parser.add_argument("--latency-threshold", type=float, default=0.10, help="allowed p90 latency rise (load runs)")
    parser.add_argument("--ratio", action="append", help="numerator/denominator engines (repeatable)")
    parser.add_argument("--ratios-only", action="store_true", help="gate same-run ratios only (no hardware check)")
    parser.add_argument("--force", action="store_true", help="compare absolute RTF across hardware anyway")
    parser.add_argument(
        "--allow-compiles", action="store_true", help="gate on runs that compiled or captured while timed"
    )
    args = parser.parse_args(argv)
    pairs = tuple(args.ratio or default_ratios())
    try:
        if args.write_baseline:
            if not args.out:
                raise BenchError("--write-baseline needs --out FILE")
            baseline = write_baseline(load_runs(args.write_baseline), args.out, pairs, args.allow_compiles)
            pooled = sum(entry["n_runs"] for entry in baseline["runs"])
            print(f"baseline of {len(baseline['runs'])} runs (pooled from {pooled}), "
                  f"{len(baseline['ratios'])} ratios -> {args.out}")  # fmt: skip
            return 0
        if not (args.baseline and args.candidate):
            raise BenchError("give --baseline FILE and --candidate RUNS (or --write-baseline RUNS --out FILE)")
        baseline = json.loads(args.baseline.read_text())
        candidate, thresholds = load_runs(args.candidate), (args.threshold, args.ratio_threshold)
        table, regressed = gate(baseline, candidate, *thresholds, args.force, args.ratios_only, pairs,
                                latency_threshold=args.latency_threshold,
                                allow_compiles=args.allow_compiles)  # fmt: skip
    except BenchError as err:
        print(f"bench.gate: error: {err}", file=sys.stderr)
        return 2
    print(markdown(table))
    print(verdicts(table))
    for line in busy_lines(candidate, baseline):
        print(f"WARNING: {line}")
    blind = blind_checks(table)
    warning = f" (WARNING: {len(blind)} check(s) too noisy for their limit; see above)" if blind else ""
    print(("FAIL: slower than the baseline beyond noise and threshold" if regressed else "PASS") + warning)
    return 1 if regressed else 0
