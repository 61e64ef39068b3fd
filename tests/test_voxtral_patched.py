"""voxtral_patched gives voxtral_stock's tokens, and its logits at every step up to float32
noise: all patches on (batch 1 and 4), each one off alone (batch 4), and the CUDA graph path
emulated on the CPU.

Tiny scale, float32, CPU, every clip of the sample dataset.
"""

import warnings

import numpy as np
import pytest
import torch
from conftest import compose_config, tiny_engine
from engine_runs import CPU, ablation_cases, assert_same_logits, chunk_counts, run_clips

from bench.data import load_utterances
from bench.engines import _voxtral as vox
from bench.engines._fast.prefill_pieces import piece_bounds
from bench.engines._fast.transformers_lm import cache_kwarg_names
from bench.engines._fast.windows import window_sizes
from bench.engines.voxtral_patched import PATCHES
from bench.errors import BenchError
from bench.pipeline.clock import Clock
from bench.pipeline.measure import make_batches


@pytest.fixture(scope="module")
def sample():
    return load_utterances(compose_config("dataset=sample").dataset, progress=False)


@pytest.fixture(scope="module")
def stock():
    return tiny_engine("voxtral_stock")


@pytest.fixture(scope="module")
def expected(stock, sample):
    targets = {u.id: stock.count_target_tokens(u.reference) for u in sample}
    return targets, {size: run_clips(stock, sample, size, targets) for size in (1, 4)}


@pytest.mark.slow
@pytest.mark.parametrize(("off", "batch_size"), ablation_cases(PATCHES))
def test_tokens_equal_stock(off, batch_size, expected, sample):
    targets, stock = expected
    patches = [p for p in PATCHES if p != off]
    engine = tiny_engine("voxtral_patched", f"engine.patches=[{','.join(patches)}]")
    tokens, logits = run_clips(engine, sample, batch_size, targets)
    assert tokens == stock[batch_size][0]
    assert all(len(tokens[u.id]) == targets[u.id] for u in sample)  # length-matched exactly
    assert_same_logits(logits, stock[batch_size][1])
    report = engine.report()
    assert report["compiled_step_active"] == (off not in ("compiled_step", "static_cache"))
    # one decode-step shape per chunk count (its own cache: a step reads all of it), with
    # compiled_prefill a prefill shape per chunk count and an encoder shape per count of chunks
    # encoded together; each compiled once at most (none when an earlier engine in this process
    # compiled it), never per batch
    assert report["graphs_compiled"] <= most_graphs(engine, sample, batch_size)


def most_graphs(engine, sample, batch_size) -> int:
    shapes = {engine.batch_shape([len(u.audio) for u in batch]) for batch in make_batches(sample, batch_size)}
    options = engine.decoder.options
    if not options.static_cache:
        return 0
    prompt_shapes = {shape[:2] for shape in shapes}
    assert len(prompt_shapes) == chunk_counts(sample)
    encoder_shapes = len({shape[3] for shape in shapes}) if options.compiled_prefill else 0
    # a prefill shape per prompt; in pieces, two: its first (what does not fill a whole piece) and a piece
    prefill_shapes = 0
    for _, _, prompt_chunks in {shape[:3] for shape in shapes} if options.compiled_prefill else []:
        prompt = vox.VoxtralEngine.context_tokens(prompt_chunks * vox.CHUNK_SAMPLES)
        prefill_shapes += len({end - start for start, end in piece_bounds(prompt, options.prefill_piece)})
    # a compiled step per attention window a shape can reach (one: the capacity, without the patch)
    steps = 0
    for _, chunks in prompt_shapes:
        capacity = vox.static_cache_len(chunks, engine.engine_cfg.max_new_tokens)
        prompt = vox.VoxtralEngine.context_tokens(chunks * vox.CHUNK_SAMPLES)
        steps += len(window_sizes(capacity, prompt + 1)) if options.window else 1
    return steps * options.compiled + prefill_shapes + encoder_shapes


def test_the_default_config_switches_every_patch_on():
    cfg = compose_config("engine=voxtral_patched")
    assert list(cfg.engine.patches) == list(PATCHES)


def test_unknown_patch_is_named():
    with pytest.raises(BenchError, match="unknown patch"):
        tiny_engine("voxtral_patched", "engine.patches=[static_cache,warp_drive]")


def test_features_on_the_device_equal_the_processors(sample):
    """device_features reproduces the processor's log-mel, 16-bit WAV rounding included."""
    engine = tiny_engine("voxtral_patched")
    for clip in (sample[0], sample[-1]):  # two chunks, one chunk
        inputs = engine.processor.apply_transcription_request(
            language="en", audio=[clip.audio], format=["wav"], model_id="x", sampling_rate=16_000
        )
        ours = engine.log_mel(torch.from_numpy(clip.audio))
        assert ours.shape == inputs["input_features"].shape
        torch.testing.assert_close(ours, inputs["input_features"], rtol=0, atol=1e-5)


@pytest.mark.slow
def test_phases_and_report(sample):
    engine = tiny_engine("voxtral_patched")
    clips = sample[-3:]
    with Clock(CPU) as clock:
        engine.transcribe([c.audio for c in clips], [5, 6, 7], clock)
    assert {"h2d", "features", "encode", "merge", "prefill", "decode", "detokenise"} <= set(clock.phases)
    report = engine.report()
    assert report["patches"] == sorted(PATCHES) and report["cuda_graph_active"] is False  # CPU
    assert report["end_of_sequence_read"] == "one step late, never blocking"


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [1, 4])
def test_cuda_graph_path_emulated_on_the_cpu(batch_size, expected, sample, monkeypatch):
    """The CUDA-only decode path (capture once, replay per step) keeps stock's tokens."""
    from cuda_graph_emulation import Emulation

    targets, stock = expected
    engine = tiny_engine("voxtral_patched")
    emulation = Emulation(engine, monkeypatch)
    tokens, logits = run_clips(engine, sample, batch_size, targets)
    assert tokens == stock[batch_size][0]
    assert_same_logits(logits, stock[batch_size][1])
    # one graph per batch shape and attention window, replayed after: 1 chunk (891 slots, a prompt of 383:
    # windows of 512 and 891) and 2 chunks (1,766 slots, a prompt of 758: 1,024 and 1,766)
    assert chunk_counts(sample) == 2 and emulation.captures == 4
    assert emulation.replays >= len(make_batches(sample, batch_size)) * 2


def test_decoding_uses_the_language_models_current_keywords(sample):
    """No deprecated keyword reaches transformers (5.24 renamed past_key_values to cache
    and removes the old name in 5.40): its deprecation warning fails this test."""
    engine = tiny_engine("voxtral_patched")
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        with Clock(CPU) as clock:
            out = engine.transcribe([sample[-1].audio], [6], clock)
    assert len(out[0].tokens) == 6


def test_cache_keywords_follow_the_signature():
    class Before524(torch.nn.Module):
        def forward(self, inputs_embeds=None, past_key_values=None, cache_position=None, **kwargs): ...

    class Since524(torch.nn.Module):
        def forward(self, inputs_embeds=None, cache=None, **kwargs): ...

    assert cache_kwarg_names(Before524()) == ("past_key_values", "cache_position")
    assert cache_kwarg_names(Since524()) == ("cache", None)


def test_a_finished_batch_decodes_exactly_one_step_more(sample, stock):
    """End-of-sequence is read one step late (sync_free_loop): a batch that ends on its
    end-of-sequence tokens runs stock's decode steps plus exactly one, whose tokens are all
    padding; read after every step (the patch off), exactly stock's."""
    lagged = tiny_engine("voxtral_patched")
    all_but_sync_free_loop = ",".join(p for p in PATCHES if p != "sync_free_loop")
    every_step = tiny_engine("voxtral_patched", f"engine.patches=[{all_but_sync_free_loop}]")
    for batch in make_batches(sample[-9:], 3):
        targets = [stock.count_target_tokens(u.reference) for u in batch]
        steps, tokens = {}, {}
        for name, each in (("stock", stock), ("lagged", lagged), ("every step", every_step)):
            with Clock(CPU) as clock:
                out = each.transcribe([u.audio for u in batch], targets, clock)
            steps[name], tokens[name] = clock.counts["decode_steps"], [t.tokens for t in out]
        assert steps["lagged"] == steps["stock"] + 1 and steps["every step"] == steps["stock"], steps
        assert tokens["lagged"] == tokens["every step"] == tokens["stock"]  # the extra step emitted padding only


def test_with_a_larger_cache_each_prompt_length_is_a_shape_of_its_own(monkeypatch):
    """engine.max_chunks=2 gives every batch a two-chunk cache, but a batch of one-chunk clips
    has a shorter prompt (757 positions against 1132): compiled_prefill compiles each prompt
    length, so each must be warmed up apart. The batch shape once knew only the cache's chunks,
    and without batched_encoder the two shared one key: the second prefill compiled while timed."""
    from bench.engines._fast import layers

    patches = ",".join(p for p in PATCHES if p != "batched_encoder")
    engine = tiny_engine("voxtral_patched", "engine.max_chunks=2", f"engine.patches=[{patches}]")
    one_chunk, two_chunks = [10 * 16_000], [40 * 16_000]
    assert engine.batch_shape(one_chunk) != engine.batch_shape(two_chunks)
    # the plan makes room in Dynamo's limit for two prefill graphs, a step and an encoder graph per shape
    monkeypatch.setattr(layers, "RECOMPILE_FLOOR", 1)
    with torch._dynamo.config.patch(recompile_limit=1, accumulated_recompile_limit=1):  # restored after
        engine.plan([one_chunk, two_chunks, [5 * 16_000, 70 * 16_000]])
        assert torch._dynamo.config.recompile_limit == 4 * 3
        assert torch._dynamo.config.accumulated_recompile_limit == 2 * 4 * 3


def test_a_long_prompt_is_prefilled_in_pieces_with_the_tokens_of_one_forward():
    """chunked_prefill: a prompt over 512 positions is prefilled 512 at a time (one forward holds
    its attention's scores for every prompt position over the cache: quadratic in the clip), each
    piece attending what the pieces before it wrote. The tokens equal one forward's: a clip of
    three chunks alone, and beside a shorter clip whose left padding fills its first piece."""
    eager = [p for p in PATCHES if p not in ("compiled_step", "compiled_prefill", "chunked_prefill")]
    whole = tiny_engine("voxtral_patched", f"engine.patches=[{','.join(eager)}]")
    pieces = tiny_engine("voxtral_patched", f"engine.patches=[{','.join([*eager, 'chunked_prefill'])}]")
    rng = np.random.default_rng(5)
    long, short = (rng.normal(0, 0.05, seconds * 16_000).astype(np.float32) for seconds in (70, 35))
    queries = []
    attention = pieces.model.model.language_model.layers[0].self_attn
    attention.register_forward_hook(lambda module, args, kwargs, out: queries.append(kwargs["hidden_states"].shape[1]),
                                    with_kwargs=True)  # fmt: skip
    for audios, targets in (([long], [30]), ([short, long], [20, 30])):
        queries.clear()
        expected = [t.tokens for t in whole.transcribe(audios, targets, Clock(CPU))]
        got = [t.tokens for t in pieces.transcribe(audios, targets, Clock(CPU))]
        assert got == expected
        # 3 x 375 audio positions and the prompt's 8 others: 1,133, what does not fill a piece first
        assert queries[:4] == [109, 512, 512, 1]
    assert pieces.max_cache_len == whole.max_cache_len  # no slot more


def test_a_piece_attends_the_prompt_up_to_each_position_and_padding_only_itself():
    """The mask of a chunked prefill's piece: a real position attends the prompt's slots up to
    its own, as one forward's causal mask; a padding position (left padding) attends itself
    alone, so no softmax row is empty (NaN on some attention kernels; torch's CPU kernel gives 0)."""
    from bench.engines._fast.prefill_pieces import piece_mask

    valid = torch.zeros(2, 10, dtype=torch.bool)
    valid[0, 5:8] = True  # a shorter prompt: 5 slots of left padding
    valid[1, 0:8] = True
    got = piece_mask(valid, 4, 8)
    assert got.shape == (2, 1, 4, 10)
    causal = torch.arange(10)[None, :] <= torch.arange(4, 8)[:, None]
    assert torch.equal(got[1, 0], causal & valid[1])
    assert torch.equal(got[0, 0, 1:], (causal & valid[0])[1:])  # slots 5 to 7: the prompt up to each
    assert got[0, 0, 0].tolist() == [k == 4 for k in range(10)]  # slot 4, padding: itself alone
