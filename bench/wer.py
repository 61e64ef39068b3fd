"""Word error rate: Whisper's normalisers (from the openai-whisper package) + jiwer.

Corpus WER is total errors / total reference words over normalised text. An utterance
whose normalised reference is empty keeps its insertions in the totals and is counted
in ``n_empty_references`` so it is never silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import jiwer


@cache
def normalizer(language: str):
    from whisper.normalizers import BasicTextNormalizer, EnglishTextNormalizer

    return EnglishTextNormalizer() if language == "en" else BasicTextNormalizer()


@dataclass
class UtteranceErrors:
    reference_norm: str
    hypothesis_norm: str
    substitutions: int
    deletions: int
    insertions: int
    reference_words: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions


@dataclass
class CorpusErrors:
    wer: float | None  # None when there are no reference words at all
    substitutions: int
    deletions: int
    insertions: int
    reference_words: int
    n_empty_references: int


def utterance_errors(reference: str, hypothesis: str, language: str = "en") -> UtteranceErrors:
    norm = normalizer(language)
    ref, hyp = norm(reference).strip(), norm(hypothesis).strip()
    if not ref:
        # jiwer's alignment is undefined for an empty reference: every hypothesis word is inserted.
        return UtteranceErrors(ref, hyp, 0, 0, len(hyp.split()), 0)
    out = jiwer.process_words(ref, hyp)
    return UtteranceErrors(ref, hyp, out.substitutions, out.deletions, out.insertions, len(ref.split()))


def corpus_errors(items: list[UtteranceErrors]) -> CorpusErrors:
    s = sum(i.substitutions for i in items)
    d = sum(i.deletions for i in items)
    n_ins = sum(i.insertions for i in items)
    words = sum(i.reference_words for i in items)
    return CorpusErrors(
        wer=(s + d + n_ins) / words if words else None,
        substitutions=s,
        deletions=d,
        insertions=n_ins,
        reference_words=words,
        n_empty_references=sum(1 for i in items if i.reference_words == 0),
    )
