"""bench.serve compiles nothing after its warm-up (part of the hostile-traffic suite): a clip of a
chunk count the warm-up did not meet gave voxtral_patched a new batch shape, whose graphs it
compiled while serving, and every request behind it waited (6.8 to 13.1 s on the 2-core CPU,
docs/serving.md). Such a clip now runs uncompiled, on a cache dropped after it, with the tokens
the compiled path gives; a shape the warm-up made still runs compiled."""

import gc
import weakref

import pytest
from cuda_graph_emulation import Emulation
from fastapi.testclient import TestClient
from test_serve_hostile import TINY, encoded, noise
from test_serve_limits import NOT_COMPILED

from bench.engines.base import compiled_graphs, run_to_end
from bench.lab.grid import compose
from bench.online import server
from bench.online.batcher import token_targets
from bench.online.metrics import samples
from bench.online.warmup import warm_every_shape
from bench.pipeline.clock import Clock

ROUTE = "/v1/audio/transcriptions"
THREE_CHUNKS = 65  # seconds: the warm-up's clips are 1 s and 31 s (one and two 30 s chunks)


def _tokens(engine, audio, target: int, clock: Clock | None = None) -> list[list[int]]:
    steps = engine.transcribe_steps([audio], [target], clock or Clock(engine.device))
    return [t.tokens for t in run_to_end(steps)]


def test_a_shape_the_warm_up_did_not_make_is_not_captured_and_keeps_its_tokens(monkeypatch):
    """With CUDA graphs (emulated on the CPU): after the warm-up, a 65 s clip captures no graph
    and keeps no cache, and its tokens equal those of the same clip once its shape is captured;
    a 40 s clip (a shape the warm-up made) still replays its graphs."""
    from conftest import tiny_engine

    engine = tiny_engine("voxtral_patched", NOT_COMPILED)
    emulation = Emulation(engine, monkeypatch)
    warm_every_shape(engine, 1, 60, 3.5)
    shapes, captures = set(engine.decoder.shapes), emulation.captures
    assert captures > 0 and {rows for rows, _ in shapes} == {0, 1}  # 0: the one made at load, never run

    long = noise(THREE_CHUNKS, 4)
    steps = engine.transcribe_steps([long], [30], Clock(engine.device))
    for _ in range(12):  # 3 chunks' log-mel and encoder, 3 prefill pieces: into its decode
        next(steps)
    cache = engine.decoder.cache_in_use
    assert all(cache is not state.cache for state in engine.decoder.shapes.values())
    cache = weakref.ref(cache)
    uncompiled = [t.tokens for t in run_to_end(steps)]
    gc.collect()
    assert cache() is None  # dropped as its batch ended, not kept for a next batch of its shape
    assert emulation.captures == captures and set(engine.decoder.shapes) == shapes
    assert engine.uncompiled_decodes() == 1

    replays, clock = emulation.replays, Clock(engine.device)
    _tokens(engine, noise(40, 5), 20, clock)
    assert emulation.replays - replays == clock.counts["decode_steps"] >= 19  # every step after the prefill's
    assert emulation.captures == captures and engine.uncompiled_decodes() == 1

    engine.decoder.warm_only = False  # as before the fix: the new shape is captured while serving
    captured = _tokens(engine, long, 30)
    assert emulation.captures > captures and len(engine.decoder.shapes) == len(shapes) + 1
    assert captured == uncompiled and len(uncompiled[0]) == 30


@pytest.mark.slow
def test_served_voxtral_patched_compiles_nothing_for_a_clip_the_warm_up_did_not_meet():
    """Through bench.serve, torch.compile on the CPU (compiled step and prefill): a 65 s clip is
    answered with no compile after start-up, /metrics and /v1/models count its uncompiled decode,
    and its text is the one the same engine gives once it has compiled that shape."""
    cfg = compose(["engine=voxtral_patched", *TINY, "run.batch_size=1", "serve.max_audio_seconds=120"])
    engine = server.load_engine(cfg)
    long = noise(THREE_CHUNKS, 4)
    with TestClient(server.create_app(engine, cfg, {"hardware": "test"})) as client:
        before = compiled_graphs()
        answer = client.post(ROUTE, files={"file": ("a.wav", encoded(long), "audio/wav")})
        assert answer.status_code == 200, answer.text
        card = client.get("/v1/models").json()["data"][0]["bench"]
        scrape = samples(client.get("/metrics").text)
    assert compiled_graphs() == before
    assert card["compiles_after_startup"] == 0 and card["uncompiled_decodes_after_startup"] == 1
    assert scrape[("bench_uncompiled_decodes_after_startup", ())] == 1

    engine.decoder.warm_only = False
    targets = token_targets(engine, [len(long)], cfg.serve.random_tokens_per_second)  # as the server's
    compiled = engine.transcribe([long], targets, Clock(engine.device))
    assert compiled_graphs() > before  # the shape was new: compiled now, as it was while serving before
    assert compiled[0].text == answer.json()["text"]
