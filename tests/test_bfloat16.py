"""Every engine in bfloat16, the dtype the GPU runs use (the other CPU tests run float32).

Tiny scale, random weights (every engine that builds them; faster_whisper's CTranslate2
runs bfloat16 only on a GPU), CPU: a clip of two 30 s chunks and a short one in one batch
come back with exactly their references' token counts. Whisper failed this until its
LayerNorms were kept in float32 (see openai_whisper.in_run_dtype).
"""

import pytest
import torch
from conftest import compose_config, tiny_engine

from bench.data import load_utterances
from bench.engines import engine_class, engine_names
from bench.pipeline.clock import Clock

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def clips():
    sample = load_utterances(compose_config("dataset=sample").dataset, progress=False)
    longest, shortest = sample[0], sample[-1]
    assert longest.duration_s > 30 > shortest.duration_s
    return [longest, shortest]


@pytest.mark.slow
@pytest.mark.parametrize("name", [e for e in engine_names() if engine_class(e).RANDOM_WEIGHTS])
def test_every_engine_transcribes_in_bfloat16(name, clips):
    engine = tiny_engine(name, dtype=torch.bfloat16)
    targets = [engine.count_target_tokens(u.reference) for u in clips]
    with Clock(CPU) as clock:
        out = engine.transcribe([u.audio for u in clips], targets, clock)
    assert [t.n_tokens for t in out] == targets
    weights = {p.dtype for p in engine.model.parameters()}
    assert torch.bfloat16 in weights and weights <= {torch.bfloat16, torch.float32}


def test_whisper_keeps_only_its_layer_norms_in_float32():
    from whisper.model import LayerNorm

    engine = tiny_engine("openai_whisper", dtype=torch.bfloat16)
    norms = {id(p) for m in engine.model.modules() if isinstance(m, LayerNorm) for p in m.parameters()}
    assert norms
    assert {(id(p) in norms, p.dtype) for p in engine.model.parameters()} == {
        (True, torch.float32),
        (False, torch.bfloat16),
    }
