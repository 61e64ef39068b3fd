"""An engine with known delays, to check the measurement arithmetic."""

import time

import torch
from omegaconf import OmegaConf

from bench.config import EngineConfig, ModelConfig
from bench.engines.base import Engine, Transcript


class FakeEngine(Engine):
    """Sleeps `batch_delay` per batch (`cold_delay` on the first call), echoes a fixed text."""

    batch_delay = 0.05
    cold_delay = 0.3
    load_delay = 0.1

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = 0

    def load(self):
        time.sleep(self.load_delay)

    def count_target_tokens(self, reference):
        return len(reference.split())

    def transcribe(self, audios, target_tokens, clock):
        with clock.phase("decode"):
            time.sleep(self.cold_delay if self.calls == 0 else self.batch_delay)
        self.calls += 1
        counts = target_tokens or [3] * len(audios)
        return [Transcript("fake words here", n) for n in counts]


def fake_engine(weights="pretrained", kind=None, **attrs) -> FakeEngine:
    engine_cfg = OmegaConf.structured(EngineConfig(name="fake", family="fake"))
    model_cfg = OmegaConf.structured(ModelConfig(name="fake", family="fake", id="fake", weights=weights))
    engine = (kind or FakeEngine)(engine_cfg, model_cfg, torch.device("cpu"), torch.float32, "en")
    for key, value in attrs.items():
        setattr(engine, key, value)
    return engine


class ShapeEngine(FakeEngine):
    """A FakeEngine that, like an engine with CUDA graphs, captures a graph at the first batch
    of each shape (its row count) and forgets them all after running out of memory; optionally
    it fails on the clips whose first sample is `poison`."""

    batch_delay = cold_delay = 0.0
    poison = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.graphs, self.captured = set(), 0

    def batch_shape(self, lengths):
        return len(lengths)

    def graph_captures(self):
        return self.captured

    def after_out_of_memory(self):
        self.graphs.clear()

    def transcribe(self, audios, target_tokens, clock):
        if self.poison is not None and any(a[0] == self.poison for a in audios):
            raise ValueError("this clip cannot be transcribed")
        if len(audios) not in self.graphs:
            self.graphs.add(len(audios))
            self.captured += 1
        return super().transcribe(audios, target_tokens, clock)
