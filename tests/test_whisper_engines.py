"""whisper_hf, whisper_compile and whisper_patched decode openai_whisper's tokens from the same
weights, with its logits at every step: every clip of the sample dataset (short and long form),
batch 1 and 4, every whisper_patched patch on (and each off alone, batch 4), its CUDA graph path
emulated on the CPU. Tiny scale, float32, CPU."""

import pytest
import torch
from conftest import compose_config, tiny_engine
from engine_runs import ablation_cases, run_clips

from bench.data import load_utterances
from bench.engines import _whisper as wh
from bench.engines.whisper_patched import PATCHES

WHISPER = "model=whisper_large_v3"
LONG_FORM = 30 * 16_000


@pytest.fixture(scope="module")
def sample():
    return load_utterances(compose_config("dataset=sample").dataset, progress=False)


@pytest.fixture(scope="module")
def expected(sample):
    reference = tiny_engine("openai_whisper", WHISPER)
    targets = {u.id: reference.count_target_tokens(u.reference) for u in sample}
    return targets, {size: run_clips(reference, sample, size, targets) for size in (1, 4)}


def assert_same(got, want, sample):
    """The same tokens on every clip; on the short clips, whose logits come one step per row,
    the same logits at every step openai_whisper took, within 1e-5 of the step's largest
    (two implementations of one model in float32: a few units in the last place)."""
    tokens, logits = got
    want_tokens, want_logits = want
    assert tokens == want_tokens
    for u in sample:
        if len(u.audio) > LONG_FORM:
            continue
        steps = logits[u.id][: len(want_logits[u.id])]
        assert len(steps) == len(want_logits[u.id]), u.id
        scale = want_logits[u.id].abs().amax(dim=-1, keepdim=True)
        assert ((steps - want_logits[u.id]).abs() <= 1e-5 * scale).all(), u.id


def test_the_same_seed_gives_the_same_weights_in_both_layouts():
    cfg = compose_config("engine=whisper_hf", WHISPER, "model.weights=random", "model.scale=tiny")
    engine = tiny_engine("whisper_hf", WHISPER)
    source = wh.openai_model(cfg.model, engine.architecture, torch.device("cpu"))
    converted = wh.hf_state_dict(source.state_dict())
    held = engine.model.state_dict()
    assert set(converted) == set(held)
    for key, value in converted.items():
        assert torch.equal(held[key], value), key


def test_the_converted_model_draws_nothing_of_its_own_and_keeps_its_tie():
    """hf_model builds transformers' model without storage and hands it the source's tensors: it
    calls no initialiser (each would draw values only to be overwritten), leaves nothing on the
    meta device, and its output projection is the token embedding itself (one tensor, as tied)."""
    from unittest import mock

    cfg = compose_config("engine=whisper_hf", WHISPER, "model.weights=random", "model.scale=tiny")
    engine = tiny_engine("whisper_hf", WHISPER)
    drawn = []  # the shapes of tensors with storage that normal_ filled
    real = torch.nn.init.normal_

    def normal_(tensor, *args, **kwargs):
        if not tensor.is_meta:
            drawn.append(tuple(tensor.shape))
        return real(tensor, *args, **kwargs)

    with mock.patch.object(torch.nn.init, "normal_", normal_):
        wh.openai_model(cfg.model, engine.architecture, torch.device("cpu"))
        source_draws, drawn[:] = list(drawn), []
        model = wh.hf_model(cfg.model, engine.architecture, torch.device("cpu"), torch.float32)
    assert source_draws  # the source's own embeddings: the count is live
    assert drawn == source_draws  # transformers' layers, which normal_ initialises, add none
    assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])
    assert model.proj_out.weight is model.model.decoder.embed_tokens.weight


def test_a_name_openai_whisper_does_not_have_is_refused():
    from bench.errors import BenchError

    with pytest.raises(BenchError, match="no transformers name"):
        wh.hf_state_dict({"decoder.blocks.0.attn.rotary.weight": torch.zeros(1)})


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [1, 4])
@pytest.mark.parametrize("name", ["whisper_hf", "whisper_compile"])
def test_transformers_generate_decodes_openai_whispers_tokens(name, batch_size, expected, sample):
    targets, want = expected
    engine = tiny_engine(name, WHISPER)
    assert_same(run_clips(engine, sample, batch_size, targets), want[batch_size], sample)


@pytest.mark.slow
@pytest.mark.parametrize(("off", "batch_size"), ablation_cases(PATCHES))
def test_the_fast_path_decodes_openai_whispers_tokens(off, batch_size, expected, sample):
    targets, want = expected
    patches = [p for p in PATCHES if p != off]
    engine = tiny_engine("whisper_patched", WHISPER, f"engine.patches=[{','.join(patches)}]")
    assert_same(run_clips(engine, sample, batch_size, targets), want[batch_size], sample)
    report = engine.report()
    assert report["compiled_step_active"] == (off not in ("compiled_step", "static_cache"))


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [1, 4])
def test_the_cuda_graph_path_emulated_on_the_cpu(batch_size, expected, sample, monkeypatch):
    from cuda_graph_emulation import Emulation

    targets, want = expected
    engine = tiny_engine("whisper_patched", WHISPER)
    emulation = Emulation(engine, monkeypatch)
    assert_same(run_clips(engine, sample, batch_size, targets), want[batch_size], sample)
    # one graph per batch shape and attention window: short batches (228 slots: windows of 128 and 228),
    # and a long clip's 30 s windows one at a time (448 slots: 128, 256 and 448)
    assert emulation.captures == 5 and emulation.replays > len(sample)


@pytest.mark.slow
def test_one_compiled_function_serves_every_decoder_layer(sample):
    """compile_scope=layers (the scope a CUDA graph gets): the decoder's layers through one
    compiled function, the index by which Whisper's attention reads the encoder-decoder cache
    kept out of the compiled code. Twice the layers, the same graphs; openai_whisper's tokens."""
    short = [u for u in sample if len(u.audio) <= LONG_FORM]
    graphs = {}
    for layers in (2, 4):
        torch._dynamo.reset()
        depth = f"model.tiny.n_text_layer={layers}"
        reference = tiny_engine("openai_whisper", WHISPER, depth)
        targets = {u.id: reference.count_target_tokens(u.reference) for u in short}
        want = run_clips(reference, short, 4, targets)
        engine = tiny_engine("whisper_patched", WHISPER, depth, "engine.compile_scope=layers")
        assert_same(run_clips(engine, short, 4, targets), want, short)
        graphs[layers] = engine.report()["graphs_compiled"]
        assert engine.report()["compiled_scope"] == "layers"
    # per batch shape: the decode step at each of its 2 attention windows and the prefill, and
    # the encoder's layers (one more for the last batch's 3 rows)
    assert graphs[2] == graphs[4] > 0


def test_the_device_log_mel_is_openai_whispers(sample):
    from whisper.audio import log_mel_spectrogram

    engine = tiny_engine("whisper_patched", WHISPER)
    clips = [u.audio[:LONG_FORM] for u in (sample[0], sample[-1])]
    batch = torch.zeros(2, LONG_FORM)
    for row, clip in enumerate(clips):
        batch[row, : len(clip)] = torch.from_numpy(clip)
    together = engine.log_mel(batch)
    for row in range(2):
        alone = log_mel_spectrogram(batch[row], n_mels=engine.model.config.num_mel_bins)
        torch.testing.assert_close(together[row], alone, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_engines_of_english_only_weights_decode_noise_by_one_rule():
    """Real tiny.en weights (English-only: no language or task token) on noise clips: whisper_hf
    and whisper_patched write what openai_whisper writes. whisper_hf once put token 0 ("!") into
    its prompt, since generate detected a language from an empty table, and wrote "I'm not sure
    what's going on." where the others wrote "You"."""
    from bench.engines import engine_class
    from bench.pipeline.clock import Clock

    cfg = compose_config("model=whisper_tiny_en", "dataset=synthetic", "dataset.n_clips=4",
                         "dataset.min_seconds=10", "dataset.max_seconds=10")  # fmt: skip
    audios = [u.audio for u in load_utterances(cfg.dataset, progress=False)]
    written = {}
    for name in ("openai_whisper", "whisper_hf", "whisper_patched"):
        engine_cfg = compose_config(f"engine={name}", "model=whisper_tiny_en").engine
        engine = engine_class(name)(engine_cfg, cfg.model, torch.device("cpu"), torch.float32, "en")
        engine.load()
        written[name] = [t.text for t in engine.transcribe(audios, None, Clock(torch.device("cpu")))]
    assert "You" in written["openai_whisper"]  # noise that tells the prompts apart
    assert written["whisper_hf"] == written["openai_whisper"] == written["whisper_patched"]
