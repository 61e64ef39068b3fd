"""Datasets become lists of decoded utterances before anything is timed."""

from bench.data.loading import Failure, Utterance, dataset_name, load_utterances, utterances_fingerprint

__all__ = ["Failure", "Utterance", "dataset_name", "load_utterances", "utterances_fingerprint"]
