"""WER on hand-made pairs; every expected figure below was worked out by hand."""

import pytest

from bench.wer import corpus_errors, utterance_errors


def test_normalisation_then_alignment():
    # EnglishTextNormalizer: "Mr. Smith's 2 cats" -> "mister smith is 2 cats" (5 words),
    # "mister smiths two cats" -> "mister smiths 2 cats". Alignment: smith->smiths (S),
    # "is" deleted (D): 2 errors over 5 reference words.
    e = utterance_errors("Mr. Smith's 2 cats", "mister smiths two cats")
    assert e.reference_norm == "mister smith is 2 cats"
    assert e.hypothesis_norm == "mister smiths 2 cats"
    assert (e.substitutions, e.deletions, e.insertions, e.reference_words) == (1, 1, 0, 5)
    assert corpus_errors([e]).wer == pytest.approx(2 / 5)


def test_punctuation_and_case_are_not_errors():
    e = utterance_errors("Hello, World!", "hello world")
    assert e.errors == 0 and e.reference_words == 2


def test_corpus_wer_is_total_errors_over_total_words_not_mean_of_rates():
    a = utterance_errors("the cat sat", "the cat sat down")  # 1 insertion / 3 words
    b = utterance_errors("a b c d e f g", "a b c d e f")  # 1 deletion / 7 words
    corpus = corpus_errors([a, b])
    assert (a.insertions, b.deletions) == (1, 1)
    assert corpus.wer == pytest.approx(2 / 10)  # the mean of rates would be (1/3 + 1/7) / 2


def test_empty_reference_is_counted_and_its_insertions_kept():
    # (fillers such as "uh" are removed by the normaliser, so use real words)
    empty = utterance_errors("", "so hello")
    full = utterance_errors("good morning", "good morning")
    corpus = corpus_errors([empty, full])
    assert empty.insertions == 2 and empty.reference_words == 0
    assert corpus.n_empty_references == 1
    assert corpus.wer == pytest.approx(2 / 2)
    assert corpus_errors([empty]).wer is None  # no reference words: undefined, not zero


def test_other_languages_use_the_basic_normaliser():
    e = utterance_errors("Größe, Straße!", "größe straße", language="de")
    assert e.errors == 0
