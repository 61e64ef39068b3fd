"""The Whisper engine at tiny scale on the CPU, weights random or loaded from a checkpoint."""

from dataclasses import asdict

import numpy as np
import pytest
import torch
from conftest import compose_config

from bench.data import load_utterances
from bench.engines.openai_whisper import OpenAIWhisper
from bench.errors import BenchError
from bench.pipeline.clock import Clock


def make_engine(*overrides):
    cfg = compose_config("engine=openai_whisper", "model.scale=tiny", *overrides)
    engine = OpenAIWhisper(cfg.engine, cfg.model, torch.device("cpu"), torch.float32, "en")
    engine.load()
    return engine


@pytest.fixture(scope="module")
def sample():
    return load_utterances(compose_config("dataset=sample").dataset, progress=False)


def test_random_weights_decode_exactly_the_reference_token_count(sample):
    engine = make_engine("model.weights=random")
    batch = [sample[0], sample[10], sample[-1]]  # longest (two windows), a medium one, the shortest
    assert batch[0].duration_s > 30
    targets = [engine.count_target_tokens(u.reference) for u in batch]
    assert targets == [len(engine.tokenizer.encode(" " + u.reference)) for u in batch]
    out = engine.transcribe([u.audio for u in batch], targets, Clock(torch.device("cpu")).__enter__())
    assert [t.n_tokens for t in out] == targets
    assert all(t.text for t in out)


def test_random_weights_are_seeded():
    a, b, c = (make_engine("model.weights=random", f"model.seed={s}") for s in (0, 0, 1))
    wa, wb, wc = (e.model.decoder.token_embedding.weight for e in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_pretrained_path_loads_a_local_checkpoint(tmp_path, sample):
    from whisper.model import ModelDimensions, Whisper

    torch.manual_seed(7)
    model = Whisper(ModelDimensions(**make_engine("model.weights=random").architecture))
    path = tmp_path / "tiny-whisper.pt"
    torch.save({"dims": asdict(model.dims), "model_state_dict": model.state_dict()}, path)

    engine = make_engine("model.weights=pretrained", f"model.id={path}", "engine.max_new_tokens=12")
    assert torch.equal(engine.model.decoder.token_embedding.weight, model.decoder.token_embedding.weight)
    clock = Clock(torch.device("cpu"))
    with clock:
        out = engine.transcribe([sample[-1].audio, sample[-2].audio], None, clock)
    assert len(out) == 2 and all(0 <= t.n_tokens <= 12 for t in out)
    assert {"h2d", "features", "encode", "decode"} <= set(clock.phases)
    assert 0 < clock.model_s <= clock.wall_s


def test_missing_pretrained_weights_say_what_to_do(tmp_path):
    with pytest.raises(BenchError, match="model.weights=random"):
        make_engine("model.weights=pretrained", f"model.id={tmp_path / 'absent.pt'}")


def test_wrong_model_family_is_refused():
    cfg = compose_config("engine=openai_whisper", "model.family=voxtral")
    with pytest.raises(BenchError, match="runs whisper models"):
        OpenAIWhisper(cfg.engine, cfg.model, torch.device("cpu"), torch.float32, "en")


def test_batched_features_match_one_at_a_time(sample):
    """Batching must not change what a clip decodes to."""
    engine = make_engine("model.weights=random")
    clips = [sample[-1], sample[-5]]
    targets = [engine.count_target_tokens(u.reference) for u in clips]
    with Clock(torch.device("cpu")) as clock:
        together = engine.transcribe([u.audio for u in clips], targets, clock)
        alone = [engine.transcribe([u.audio], [n], clock)[0] for u, n in zip(clips, targets, strict=True)]
    assert [t.text for t in together] == [t.text for t in alone]
    assert np.all([t.n_tokens for t in together] == np.array(targets))
