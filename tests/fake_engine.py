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


def fake_engine(weights="pretrained", **attrs) -> FakeEngine:
    engine_cfg = OmegaConf.structured(EngineConfig(name="fake", family="fake"))
    model_cfg = OmegaConf.structured(ModelConfig(name="fake", family="fake", id="fake", weights=weights))
    engine = FakeEngine(engine_cfg, model_cfg, torch.device("cpu"), torch.float32, "en")
    for key, value in attrs.items():
        setattr(engine, key, value)
    return engine
