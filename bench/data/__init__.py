"""Datasets become lists of decoded utterances before anything is timed."""

from bench.data.loading import Utterance, load_utterances

__all__ = ["Utterance", "load_utterances"]
