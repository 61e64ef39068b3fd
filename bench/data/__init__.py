"""Datasets become lists of decoded utterances before anything is timed."""

from bench.data.loading import dataset_name, load_utterances, utterances_fingerprint
from bench.data.utterance import Failure, Utterance

__all__ = ["Failure", "Utterance", "dataset_name", "load_utterances", "utterances_fingerprint"]
