import io
import json

import numpy as np
import pytest
import soundfile as sf
from conftest import compose_config

from bench.config import PACKAGE_DIR
from bench.data import load_utterances
from bench.data.audio import decode_audio, to_mono_16k
from bench.errors import BenchError

MANIFEST = json.loads((PACKAGE_DIR / "data" / "sample" / "manifest.json").read_text())


def test_sample_dataset_loads_exact_texts_and_durations():
    cfg = compose_config("dataset=sample")
    utterances = {u.id: u for u in load_utterances(cfg.dataset, progress=False)}
    assert len(utterances) == len(MANIFEST) == 30
    for clip in MANIFEST:
        u = utterances[clip["id"]]
        assert u.reference == clip["text"]
        assert len(u.audio) == clip["n_samples"] and clip["sample_rate"] == 16_000
        assert u.audio.dtype == np.float32 and u.audio.ndim == 1
        assert 0.01 < np.abs(u.audio).max() <= 1.0  # speech, not silence
    seconds = sorted(u.duration_s for u in utterances.values())
    assert seconds[0] >= 2.0 and seconds[-1] <= 35.0
    assert sum(s > 30 for s in seconds) >= 3


def test_the_neural_sample_speaks_the_texts_of_the_sample_with_one_voice():
    neural_manifest = json.loads((PACKAGE_DIR / "data" / "sample_neural" / "manifest.json").read_text())
    neural = {u.id: u for u in load_utterances(compose_config("dataset=sample_neural").dataset, progress=False)}
    # the same ids and references as `sample`, so a clip's two voices pair up
    assert [(c["id"], c["text"]) for c in neural_manifest] == [(c["id"], c["text"]) for c in MANIFEST]
    for clip in neural_manifest:
        u = neural[clip["id"]]
        assert u.reference == clip["text"] and len(u.audio) == clip["n_samples"]
        assert 0.01 < np.abs(u.audio).max() <= 1.0
    # its own recording, not espeak-ng's resampled: every clip differs in length from its twin
    assert all(c["n_samples"] != e["n_samples"] for c, e in zip(neural_manifest, MANIFEST, strict=True))


def test_sorting_longest_first_and_limit():
    cfg = compose_config("dataset=sample")
    utterances = load_utterances(cfg.dataset, limit=5, progress=False)
    assert [u.id for u in utterances] == sorted(
        [c["id"] for c in MANIFEST[:5]], key=lambda i: -next(c["n_samples"] for c in MANIFEST if c["id"] == i)
    )
    durations = [u.duration_s for u in utterances]
    assert durations == sorted(durations, reverse=True)


def test_streaming_gives_the_same_utterances():
    plain = load_utterances(compose_config("dataset=sample").dataset, limit=4, progress=False)
    streamed = load_utterances(
        compose_config("dataset=sample", "dataset.streaming=true").dataset, limit=4, progress=False
    )
    assert [u.id for u in plain] == [u.id for u in streamed]
    assert all(np.array_equal(a.audio, b.audio) for a, b in zip(plain, streamed, strict=True))


def test_synthetic_dataset_lengths_and_word_rate():
    cfg = compose_config("dataset=synthetic_librispeech_like", "dataset.n_clips=20")
    utterances = load_utterances(cfg.dataset, progress=False)
    assert len(utterances) == 20
    for u in utterances:
        assert 3.0 <= u.duration_s <= 20.0
        assert len(u.reference.split()) == max(1, round(u.duration_s * 2.7))
    again = load_utterances(cfg.dataset, progress=False)
    assert all(np.array_equal(a.audio, b.audio) for a, b in zip(utterances, again, strict=True))


def test_stereo_44k_becomes_mono_16k():
    t = np.arange(44_100) / 44_100
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    stereo = np.stack([left, left], axis=1).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, stereo, 44_100, format="WAV", subtype="FLOAT")
    audio = decode_audio(buffer.getvalue())
    assert audio.dtype == np.float32 and audio.shape == (16_000,)
    # a 440 Hz tone survives resampling: its spectrum peaks at 440 Hz
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) * 16_000 / len(audio) - 440) < 2
    assert to_mono_16k(np.ones(16_000), 16_000).dtype == np.float32


def test_unreachable_hub_dataset_is_one_clear_error():
    cfg = compose_config("dataset=librispeech_test_clean")
    with pytest.raises(BenchError, match="could not be loaded.*dataset=sample"):
        load_utterances(cfg.dataset, limit=2, progress=False)


def test_missing_column_is_named():
    cfg = compose_config("dataset=sample", "dataset.text_column=transcript")
    with pytest.raises(BenchError, match="no column 'transcript'"):
        load_utterances(cfg.dataset, progress=False)


def test_a_missing_split_is_one_clear_error():
    cfg = compose_config("dataset=sample", "dataset.split=validation")
    with pytest.raises(BenchError, match=r"Unknown split \"validation\". Should be one of \['test'\]"):
        load_utterances(cfg.dataset, progress=False)


def test_the_neural_voice_speaks_16_khz_samples_as_long_as_the_shipped_clip():
    pytest.importorskip("piper", reason="piper-tts is not installed (the voice extra: pip install -e '.[voice]')")
    from bench.data.build_sample_neural import load_voice, speak

    shipped = json.loads((PACKAGE_DIR / "data" / "sample_neural" / "manifest.json").read_text())[1]
    samples = speak(load_voice(), shipped["text"])
    assert samples.dtype == np.int16 and 0.05 < np.abs(samples).max() / 32767 <= 1.0
    # VITS draws its timing anew each time, by a few percent; samples left at the voice's
    # 22.05 kHz would be 38% longer than the shipped 16 kHz clip
    assert abs(len(samples) / shipped["n_samples"] - 1) < 0.15


def test_a_local_dataset_path_that_does_not_exist_is_named_as_such(tmp_path):
    from bench.data import load_utterances
    from bench.errors import BenchError
    from bench.lab.grid import compose

    missing = tmp_path / "my_clips"
    cfg = compose(["dataset=sample", f"dataset.path={missing}"])
    with pytest.raises(BenchError) as err:
        load_utterances(cfg.dataset, 2, progress=False)
    assert str(err.value).startswith(f"dataset.path={missing}: no such folder.")
    assert "config None" not in str(err.value) and "Hub access" not in str(err.value)
