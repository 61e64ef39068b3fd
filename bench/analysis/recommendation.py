"""The recommendation: which configuration to deploy, in sentences that follow from the runs by
the rules below (docs/recommendation.md states them for users, with examples).

1. Every constraint given is checked on every run. A run that fails one is excluded, and the
   text names each constraint it failed. A WER limit excludes a run without WER (random
   weights); a latency limit, a run without a p90 latency; a run whose peak memory was not
   measured (a CPU run) is kept under a memory limit, and the text says it was not checked.
2. A run that compiled, captured a CUDA graph or ran eager past Dynamo's recompile limit while
   a pass was timed measured that work, not the engine's speed: excluded unless allowed.
3. Accuracy is weighed only where it was measured: when some of the remaining runs have WER,
   those without are left out of the pick (their accuracy is unknown), with a line that says
   so; when none has, speed alone decides and the text says so.
4. The single most accurate configuration (lowest WER, of any model) is the reference. A run is
   as accurate when its WER is within 2% of that lowest, relative (at most 1.02 x it: 7.18%
   admits up to 7.32%), or when the paired bootstrap over the utterances both scored puts their
   difference within noise (its 95% interval holds 0). Every run is held to that one reference,
   never to another run that was itself only as accurate: ties do not chain.
5. Speeds within noise are ties too. Among the runs as accurate as the reference, the fastest
   (highest RTFx) is set against each other one by a speed ratio with its 95% interval
   (bench.analysis.runs.speed_ratio): those whose interval holds 1 are tied on speed with it.
   The pick is the most accurate (lowest WER) of the fastest and those tied with it, and of
   equals the faster by its point estimate; the text says which ties decided it.
6. "Each model at its best" applies rules 4 and 5 within each model (its own most accurate
   as the reference), for a model is judged on its fastest engine, never on a slow one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.analysis.runs import Run, speed_ratio, wer_difference
from bench.analysis.table import wer_percent
from bench.host.busy import busy_sentence, is_busy
from bench.pipeline.cells import table_row, timed_compile_problems

WER_TOLERANCE = 0.02  # relative: a WER at most 1.02 x the lowest counts as equally accurate
TOLERANCE_WORDS = f"at most {1 + WER_TOLERANCE:g} x the lowest (within {WER_TOLERANCE:.0%}, relative)"


@dataclass(frozen=True)
class Limit:
    """One kind of constraint: the table column it reads, its direction and how it is worded."""

    field: str  # its Constraints attribute
    column: str  # the table_row figure it is checked on
    upper: bool  # the figure must stay at or below the limit (else at or above it)
    name: str
    unit: str
    figure: str  # how the run's figure is written
    missing: str  # what a run without that figure lacks
    kept_if_missing: bool  # such a run is kept (and the text says it was not checked) rather than excluded

    def rule(self, limit: float) -> str:
        return f"{self.name} {'<=' if self.upper else '>='} {self.limit(limit)}"

    def limit(self, value: float) -> str:
        """A limit as given (a WER as a percentage: 0.08 -> 8%), with its unit."""
        return f"{100 * value:g}%" if self.column == "WER" else f"{value:g}{self.unit}"

    def write(self, value: float) -> str:
        """A run's figure as bench writes it (a WER as a percentage), with its unit."""
        return wer_percent(value) if self.column == "WER" else f"{self.figure.format(value)}{self.unit}"


LIMITS = (
    Limit("max_wer", "WER", True, "WER", "", "{}", "no WER (random weights)", False),  # figure: write()'s wer_percent
    Limit("min_rtfx", "RTFx", False, "RTFx", "", "{:.3g}", "no RTFx (no batch was timed)", False),
    Limit("max_memory_gib", "peak GiB", True, "peak memory", " GiB", "{:.3g}", "peak memory not measured", True),
    Limit("max_latency_s", "p90 s", True, "p90 latency", " s", "{:.3g}", "no p90 latency", False),
)  # fmt: skip


@dataclass
class Constraints:
    max_wer: float | None = None
    min_rtfx: float | None = None
    max_memory_gib: float | None = None
    max_latency_s: float | None = None

    def _given(self) -> list[tuple[Limit, float]]:
        return [(kind, getattr(self, kind.field)) for kind in LIMITS if getattr(self, kind.field) is not None]

    def given(self) -> list[str]:
        return [kind.rule(limit) for kind, limit in self._given()]

    def failed(self, row: dict) -> tuple[list[str], list[str]]:
        """The constraints this run fails, each with its figure; and the ones it could not be
        checked on (kept, said)."""
        failed, unchecked = [], []
        for kind, limit in self._given():
            value = row[kind.column]
            if value is None:
                if kind.kept_if_missing:
                    unchecked.append(f"{kind.rule(limit)} ({kind.missing})")
                else:
                    failed.append(f"{kind.missing}, so it cannot show {kind.rule(limit)}")
            elif value > limit if kind.upper else value < limit:
                failed.append(f"{kind.name} {kind.write(value)} {'>' if kind.upper else '<'} {kind.limit(limit)}")
        return failed, unchecked


@dataclass
class Candidate:
    run: Run
    row: dict
    show_dtype: bool = False  # named where the runs differ in it (an int8 faster_whisper beside float32)

    @property
    def wer(self) -> float | None:
        return self.row["WER"]

    @property
    def rtfx(self) -> float:
        return self.row["RTFx"] or 0.0

    @property
    def model(self) -> str:
        return self.row["model"]

    @property
    def label(self) -> str:
        dtype = f" in {self.row['dtype']}" if self.show_dtype else ""
        return f"{self.row['engine']} at batch {self.row['batch']} on {self.model}{dtype}"


def _as_accurate(candidates: list[Candidate], rng) -> tuple[list[Candidate], list[str]]:
    """Rule 4: the candidates as accurate as the most accurate, and a line on each other one."""
    lowest = min(candidates, key=lambda c: (c.wer, -c.rtfx))
    kept, lines = [lowest], []
    for c in candidates:
        if c is lowest:
            continue
        diff = wer_difference(lowest.run, c.run, rng)
        noise = (
            f"{diff.cell()} over {diff.n_common} utterances, {'within' if diff.within_noise else 'beyond'} noise"
            if diff
            else "no utterance scored by both, so not tested against noise"
        )
        close = c.wer <= lowest.wer * (1 + WER_TOLERANCE)
        if close or (diff and diff.within_noise):
            kept.append(c)
        verdict = (
            f"{TOLERANCE_WORDS}: as accurate" if close
            else "tied" if diff and diff.within_noise
            else f"over {1 + WER_TOLERANCE:g} x the lowest (more than {WER_TOLERANCE:.0%} above, relative) and not "
            "within noise: less accurate"
        )  # fmt: skip
        lines.append(f"{c.label}: WER {wer_percent(c.wer)} against {wer_percent(lowest.wer)} ({lowest.label}): "
                     f"{noise}; {verdict}.")  # fmt: skip
    return kept, lines


def _fastest(candidates: list[Candidate]) -> Candidate:
    return max(candidates, key=lambda c: c.rtfx)  # the first of equals: candidates come in table order


@dataclass
class Pick:
    """Rules 4 and 5 applied to a set of runs: the pick, the accuracy lines behind it, its speed
    lines, the fastest, and those tied on speed with the fastest (within noise)."""

    best: Candidate
    accuracy: list[str]
    speed: list[str]
    fastest: Candidate
    tied: list[Candidate]


def _pick(candidates: list[Candidate], rng) -> Pick:
    """The most accurate of the fastest and the runs tied on speed with it, among the runs as
    accurate as the most accurate one (rules 4 and 5)."""
    pool, accuracy = (candidates, []) if all(c.wer is None for c in candidates) else _as_accurate(candidates, rng)
    fastest = _fastest(pool)
    tied, speed = [], []
    for c in sorted((c for c in pool if c is not fastest), key=lambda c: -c.rtfx):
        point, low, high = speed_ratio(fastest.run, c.run)
        within = low <= 1
        tied += [c] if within else []
        word = "within noise (the interval holds 1): tied on speed" if within else "faster beyond noise"
        speed.append(f"{fastest.label} is {point:.2f}x [{low:.2f}, {high:.2f}] as fast as {c.label}: {word}.")
    best = min([fastest, *tied], key=lambda c: (c.wer if c.wer is not None else 0.0, -c.rtfx))
    return Pick(best, accuracy, speed, fastest, tied)


def recommend(
    runs: list[Run],
    constraints: Constraints | None = None,
    allow_compiles: bool = False,
    hourly_price: float | None = None,
    seed: int = 0,
) -> str:
    """Pick the configuration for production under the constraints, and say why (rules above)."""
    constraints = constraints or Constraints()
    rng = np.random.default_rng(seed)  # the same runs give the same text
    rows = [table_row(run.summary, hourly_price) for run in runs]
    several_dtypes = len({row["dtype"] for row in rows}) > 1  # as the comparison table shows the column
    everyone = [Candidate(run, row, several_dtypes) for run, row in zip(runs, rows, strict=True)]
    everyone.sort(key=lambda c: (c.row["dataset"], c.row["batch"], c.row["engine"]))  # the table's order
    given = constraints.given()
    # beside the verdict: a run timed while other processes used the machine measured the host too
    lines = [busy_sentence(c.label, c.run.summary.host_load) + ": its figures may be the host's, not the engine's."
             for c in everyone if is_busy(c.run.summary)]  # fmt: skip
    lines += [f"Constraints: {'; '.join(given)}."] if given else []
    excluded, unchecked, candidates = [], [], []
    for c in everyone:
        failed, not_checked = constraints.failed(c.row)
        problems = timed_compile_problems(c.run.summary)
        if problems and not allow_compiles:
            failed.append("it " + " and ".join(problems) + " while a pass was timed, so its time includes "
                          "that work (--allow-compiles to judge it anyway)")  # fmt: skip
        if failed:
            excluded.append(f"- {c.label}: {'; '.join(failed)}.")
        else:
            candidates.append(c)
            unchecked += [f"- {c.label}: not checked on {item}." for item in not_checked]
    if excluded:
        lines += [f"Excluded ({len(excluded)} of {len(everyone)}):", *excluded]
    lines += unchecked
    if not candidates:
        return "No configuration meets every constraint; relax one or measure another configuration.\n" + "".join(
            line + "\n" for line in lines
        )
    unknown = [c for c in candidates if c.wer is None]
    if unknown and len(unknown) < len(candidates):
        lines.append(f"Left out of the pick: their accuracy was not measured (no WER: random weights), and a "
                     f"configuration of unknown accuracy is never chosen over a measured one: "
                     f"{'; '.join(c.label for c in unknown)}.")  # fmt: skip
        candidates = [c for c in candidates if c.wer is not None]
    wer_known = all(c.wer is not None for c in candidates)
    final = _pick(candidates, rng)
    by_model: dict[str, list[Candidate]] = {}
    for c in candidates:
        by_model.setdefault(c.model, []).append(c)
    at_best = [_pick(by_model[model], rng).best for model in sorted(by_model)] if len(by_model) > 1 else []
    narrowed = bool(given) or len(excluded) > 0
    return _text(final, at_best, candidates, everyone, wer_known, lines, narrowed)


def _speed_words(final: Pick, wer_known: bool) -> str:
    """How rule 5 made the pick, for the first sentence."""
    if not final.tied:
        return "the fastest"
    n = f"{len(final.tied)} configuration{'s' if len(final.tied) > 1 else ''}"
    if final.best is not final.fastest:
        return f"the most accurate of the fastest ({final.fastest.label}) and the {n} tied with it on speed (see Speed)"
    more = ", none of them more accurate" if wer_known else ""
    return f"the fastest by its point estimate ({n} tied with it on speed{more}: see Speed)"


def _text(final, at_best, candidates, everyone, wer_known, lines, narrowed) -> str:
    best = final.best
    row = best.row
    interval = f" {row['RTFx 95% CI']}" if row["RTFx 95% CI"] != "-" else ""
    figures = f"WER {wer_percent(row['WER'])} at RTFx {row['RTFx']:.1f}{interval}" if wer_known else (
        f"RTFx {row['RTFx']:.1f}" + (f", 95% CI {row['RTFx 95% CI']}" if interval else "")
    )  # fmt: skip
    among = (
        f"the {len(candidates)} of {len(everyone)} measured configurations left by the rules below"
        if narrowed or len(candidates) < len(everyone)
        else f"all {len(everyone)} measured configurations (no constraints were given)"
    )
    fastest = _speed_words(final, wer_known)
    rule = f"{fastest} of those as accurate as the most accurate configuration (WER {TOLERANCE_WORDS}, " \
           "or within noise of it)" if wer_known else fastest  # fmt: skip
    text = f"Recommended: {best.label}, with {figures}. Among {among}, it is {rule}.\n"
    text += "".join(line + "\n" for line in lines)
    if final.accuracy:
        text += "Accuracy, each against the most accurate configuration (paired bootstrap over the utterances both " \
                "scored):\n"  # fmt: skip
        text += "".join(f"- {line}\n" for line in final.accuracy)
    if final.speed:
        text += "Speed, the fastest of those as accurate against the others (speed ratio, 95% interval):\n"
        text += "".join(f"- {line}\n" for line in final.speed)
    if len(at_best) > 1:
        text += (
            "Each model at its best: "
            + "; ".join(
                f"{c.model}: {c.row['engine']} (batch {c.row['batch']}, RTFx {c.row['RTFx']:.1f}"
                + (f", WER {wer_percent(c.row['WER'])})" if wer_known else ")")
                for c in sorted(at_best, key=lambda c: -c.rtfx)
            )
            + ".\n"
        )
    if not wer_known:
        text += (
            "WER is unknown (runs with random weights), so this recommends on speed alone; "
            "measure with pretrained weights before choosing for accuracy.\n"
        )
    return text
