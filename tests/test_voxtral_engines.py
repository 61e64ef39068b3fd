"""voxtral_stock and voxtral_compile at tiny scale on the CPU, offline."""

import numpy as np
import pytest
import torch
from conftest import compose_config

from bench.data import load_utterances
from bench.engines import _voxtral as vox
from bench.engines._fast.compiled_generate import inductor_cached_graphs
from bench.engines.voxtral_compile import VoxtralCompile
from bench.engines.voxtral_stock import VoxtralStock
from bench.errors import BenchError
from bench.pipeline.clock import Clock

CPU = torch.device("cpu")


def make_engine(engine_class, name, *overrides):
    cfg = compose_config(f"engine={name}", "model.scale=tiny", *overrides)
    engine = engine_class(cfg.engine, cfg.model, CPU, torch.float32, "en")
    engine.load()
    return engine


def run(engine, clips, targets=None):
    with Clock(CPU) as clock:
        out = engine.transcribe([c.audio for c in clips], targets, clock)
    return out, clock


@pytest.fixture(scope="module")
def sample():
    return load_utterances(compose_config("dataset=sample").dataset, progress=False)


@pytest.fixture(scope="module")
def stock():
    return make_engine(VoxtralStock, "voxtral_stock", "model.weights=random")


@pytest.mark.parametrize("seconds,chunks", [(5, 1), (30, 1), (45, 2)])
def test_random_mode_prompt_layout_matches_the_processor(seconds, chunks):
    processor = vox.local_processor()
    audio = (0.1 * np.random.default_rng(0).standard_normal(16_000 * seconds)).astype(np.float32)
    inputs = processor.apply_transcription_request(
        language="en", audio=[audio], format=["wav"], model_id="voxtral", sampling_rate=16_000
    )
    language_ids = processor.tokenizer.encode("lang:en", add_special_tokens=False)
    ours = vox.transcription_prompt(vox.n_chunks(audio), language_ids)
    assert inputs["input_ids"][0].tolist() == ours
    # BOS [INST] [BEGIN_AUDIO] audio... [/INST] lang:en [TRANSCRIBE]
    assert len(ours) == 5 + len(language_ids) + 375 * chunks
    assert ours.count(vox.AUDIO) == 375 * chunks
    assert ours[:3] == [vox.BOS, vox.BEGIN_INST, vox.BEGIN_AUDIO] and ours[-1] == vox.TRANSCRIBE
    assert tuple(inputs["input_features"].shape) == (chunks, 128, 3000)


def test_random_weights_decode_exactly_the_reference_token_count(stock, sample):
    clips = [sample[0], sample[12], sample[-1]]  # a two-chunk clip, a medium one, the shortest
    assert sample[0].duration_s > 30
    targets = [stock.count_target_tokens(c.reference) for c in clips]
    out, clock = run(stock, clips, targets)
    assert [t.n_tokens for t in out] == targets == [len(t.tokens) for t in out]
    assert {"features", "h2d", "encode", "merge", "prefill", "decode", "detokenise"} <= set(clock.phases)
    assert clock.phases["decode"] > clock.phases["prefill"] > 0


def record_scores(monkeypatch) -> list[torch.Tensor]:
    """Every generate step's raw logits (every 64th vocabulary entry), as the length-matching
    logits processor receives them: outside any compiled region, before it edits them."""
    from transformers import LogitsProcessor

    from bench.engines import voxtral_stock

    steps, make = [], voxtral_stock.length_matching_processor

    def recording(*args, **kwargs):
        inner = make(*args, **kwargs)

        class Recording(LogitsProcessor):
            def __call__(self, input_ids, scores):
                steps.append(scores[:, ::64].float().clone())
                return inner(input_ids, scores)

        return Recording()

    monkeypatch.setattr(voxtral_stock, "length_matching_processor", recording)
    return steps


def test_compile_gives_the_same_token_ids_and_logits_as_stock(stock, sample, monkeypatch):
    scores = record_scores(monkeypatch)
    compiled = make_engine(VoxtralCompile, "voxtral_compile", "model.weights=random")
    for clips in ([sample[0], sample[-1], sample[-3]], [sample[20], sample[21]]):
        targets = [stock.count_target_tokens(c.reference) for c in clips]
        scores.clear()
        expected, _ = run(stock, clips, targets)
        stock_scores = torch.stack(scores)
        scores.clear()
        got, _ = run(compiled, clips, targets)
        assert [t.tokens for t in got] == [t.tokens for t in expected]
        assert [t.text for t in got] == [t.text for t in expected]
        # compile pads the smaller batch to the first one's rows: compare the real rows.
        # Inductor's fused kernels differ from eager by float32 noise (~2e-7 here).
        compiled_scores = torch.stack(scores)[:, : len(clips)]
        torch.testing.assert_close(compiled_scores, stock_scores, rtol=0, atol=1e-5)
    report = compiled.report()
    assert report["graphs_compiled_at_cold_start"] >= 1
    assert report["recompiles"] == 0  # the smaller second batch was padded to the first's shape
    assert inductor_cached_graphs() >= 1  # what compiled here is now in Inductor's on-disk cache


def test_pretrained_path_loads_a_local_folder(tmp_path, stock, sample):
    """Save the tiny random model with a locally built processor, load it by path as pretrained."""
    stock.model.save_pretrained(tmp_path)
    vox.local_processor().save_pretrained(tmp_path)
    loaded = make_engine(
        VoxtralStock,
        "voxtral_stock",
        "model.weights=pretrained",
        f"model.id={tmp_path}",
        "engine.max_new_tokens=6",
    )
    assert type(loaded.processor.tokenizer).__name__ == "MistralCommonBackend"
    clips = [sample[-1], sample[-2]]
    got, _ = run(loaded, clips)
    stock.engine_cfg.max_new_tokens, saved = 6, stock.engine_cfg.max_new_tokens
    try:
        expected, _ = run(stock, clips)
    finally:
        stock.engine_cfg.max_new_tokens = saved
    assert [t.tokens for t in got] == [t.tokens for t in expected]
    assert all(0 <= t.n_tokens <= 6 for t in got)


def test_missing_pretrained_voxtral_says_what_to_do(tmp_path):
    with pytest.raises(BenchError, match="model.weights=random"):
        make_engine(VoxtralStock, "voxtral_stock", "model.weights=pretrained", f"model.id={tmp_path / 'absent'}")


def test_too_old_transformers_is_named_with_the_floor_pyproject_declares():
    import tomllib

    from bench.config import REPO_DIR

    declared = tomllib.loads((REPO_DIR / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"transformers>={vox.MIN_TRANSFORMERS}" in declared
    with pytest.raises(BenchError, match=r"need transformers>=5\.13, this environment has 5\.12\.1"):
        vox.check_transformers_version("5.12.1")
    vox.check_transformers_version("5.13.0")
    vox.check_transformers_version("5.25.0.dev0")


def test_full_size_architectures_are_the_real_ones():
    from transformers import VoxtralConfig

    for name, layers, hidden in (("voxtral_mini_3b", 30, 3072), ("voxtral_small_24b", 40, 5120)):
        cfg = compose_config("engine=voxtral_stock", f"model={name}")
        engine = VoxtralStock(cfg.engine, cfg.model, CPU, torch.float32, "en")
        config = VoxtralConfig(**engine.architecture)
        assert (config.text_config.num_hidden_layers, config.text_config.hidden_size) == (layers, hidden)
        assert config.audio_token_id == vox.AUDIO and config.audio_config.num_hidden_layers == 32
        # 4 encoder frames stacked per audio token: 1500 frames -> 375 tokens per chunk
        assert config.audio_config.intermediate_size == 4 * config.audio_config.hidden_size


def test_the_compile_engines_count_the_cuda_graphs_reduce_overhead_records():
    """reduce-overhead mode records CUDA graphs at run time, once per new shape: those are captures
    like voxtral_patched's, and measure must see any that falls in a timed pass. The engines once
    reported 0 whatever happened; Dynamo announces each recording, as it would on a GPU here."""
    from types import SimpleNamespace

    from torch._dynamo.callback import CallbackTrigger, callback_handler

    from bench.engines._fast.compiled_generate import CompiledGenerate
    from bench.engines.base import Engine

    class Stock:  # what the compile engines take from Engine (padding rows) and their stock engine
        row_buckets, padded_rows = None, Engine.padded_rows

        def after_out_of_memory(self):
            pass

    class Compiled(CompiledGenerate, Stock):
        engine_cfg = SimpleNamespace(compile_mode="reduce-overhead", fullgraph=False)

    engine = Compiled()
    engine.setup_compile()
    assert engine.graph_captures() == 0
    with callback_handler.install_callbacks(CallbackTrigger.CUDAGRAPH_RECORDING, "0/0"):
        pass
    with callback_handler.install_callbacks(CallbackTrigger.DYNAMO, "0/1"):  # a compile, not a recording
        pass
    assert engine.graph_captures() == 1
    # one shape for the run (the plan's most rows); after running out of memory, the halves' own
    engine.plan([[16_000] * 4, [16_000] * 2])
    assert engine.batch_shape([16_000] * 2) == engine.batch_shape([16_000] * 4) == 4
    engine.after_out_of_memory()
    assert engine.batch_shape([16_000] * 2) == 2
    # served (bench.serve's row buckets): each batch to the smallest bucket that holds it
    engine.row_buckets = [1, 2, 4]
    assert [engine.batch_shape([16_000] * n) for n in (1, 2, 3, 4)] == [1, 2, 4, 4]
    assert len(engine.padded([np.zeros(16_000)] * 3)) == 4


def test_the_tokenizer_folder_a_process_writes_is_gone_when_it_exits():
    """The Voxtral-layout tekken.json is written to a temporary folder per process (11 MB): left
    behind, every run and test process added one to /tmp."""
    import subprocess
    import sys
    from pathlib import Path

    code = "from bench.engines._voxtral import local_processor, local_tokenizer_dir; local_processor(); " \
           "print(local_tokenizer_dir())"  # fmt: skip
    said = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    folder = Path(said.strip())
    assert folder.name.startswith("bench-voxtral-tokenizer-")  # the folder it used, now removed
    assert not folder.exists()
