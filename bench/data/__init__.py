"""Datasets become lists of decoded utterances before anything is timed."""

from bench.data.loading import Failure, Utterance, load_utterances

__all__ = ["Failure", "Utterance", "load_utterances"]
