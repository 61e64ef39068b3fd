"""Do two engines write the same transcripts? Pairwise agreement of runs over the same clips.

WER says how far each engine is from the reference; two engines with the same WER can still
disagree on many clips, which matters when one replaces the other in production. For each
pair of runs with real weights over the same utterances, on the normalised transcripts
(the text WER scores): clips whose transcripts are identical, clips whose word difference
(one engine's transcript scored against the other's, word errors / words) is at most
CLOSE, and the word difference over all clips together.
"""

from __future__ import annotations

from itertools import combinations

import jiwer
import pandas as pd

from bench.analysis.runs import Run

CLOSE = 0.10  # at most 1 word in 10 differs: "agrees" for a clip


def label(run: Run) -> str:
    s = run.summary
    return f"{s.engine} ({s.model}, batch {s.batch_size})"


def word_difference(first: str, second: str) -> tuple[int, int]:
    """Word errors of `second` scored against `first`, and `first`'s word count."""
    if not first.split():
        return len(second.split()), 0
    out = jiwer.process_words(first, second)
    return out.substitutions + out.deletions + out.insertions, len(first.split())


def agreement(first: Run, second: Run) -> dict:
    """How alike two runs' normalised transcripts are, clip by clip (clips both transcribed)."""
    a = first.utterances.set_index("id")
    b = second.utterances.set_index("id")
    ok = a.index[(a.status == "ok")].intersection(b.index[b.status == "ok"])
    pairs = [(a.at[i, "hypothesis_norm"] or "", b.at[i, "hypothesis_norm"] or "") for i in ok]
    differences = [word_difference(x, y) for x, y in pairs]
    close = sum(errors <= CLOSE * max(words, 1) if words else errors == 0 for errors, words in differences)
    total_errors, total_words = sum(e for e, _ in differences), sum(w for _, w in differences)
    return {
        "first": label(first),
        "second": label(second),
        "clips": len(pairs),
        "identical": sum(x == y for x, y in pairs),
        f"within {CLOSE:.0%}": close,
        "word difference": total_errors / total_words if total_words else float("nan"),
    }


def agreement_frame(runs: list[Run]) -> pd.DataFrame:
    """Every pair of real-weight runs over the same utterances that kept their transcripts (none
    for random weights: their tokens are forced to the reference's count, not the model's reading;
    none for bench.load runs, whose rows are requests, a clip sent as often as the load needed)."""
    real = [
        r
        for r in runs
        if r.summary.weights == "pretrained" and not r.summary.online and "hypothesis_norm" in r.utterances.columns
    ]
    rows = [agreement(x, y) for x, y in combinations(real, 2) if x.dataset_key == y.dataset_key]
    return pd.DataFrame(rows)


def agreement_text(frame: pd.DataFrame) -> str:
    lines = ["## Transcript agreement", ""]
    for _, row in frame.iterrows():
        n = row["clips"]
        lines.append(
            f"- {row['first']} and {row['second']}: identical on {row['identical']} of {n} clips, "
            f"within {CLOSE:.0%} word difference on {row[f'within {CLOSE:.0%}']} of {n}; "
            f"word difference over all clips {row['word difference']:.2%}."
        )
    return "\n".join(lines) + "\n"
