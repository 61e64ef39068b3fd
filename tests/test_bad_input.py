"""Bad input: every case is either handled (and checked here) or recorded as failed with
its id and reason while the run goes on; run.on_error=fail stops at it, naming it."""

import io

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from conftest import compose_config

import bench.pipeline.runner
from bench.data import Failure, load_utterances
from bench.data.build_sample import write_hub_shard
from bench.errors import BenchError

RNG = np.random.default_rng(0)


def encoded(samples: np.ndarray, sample_rate: int = 16_000, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, sample_rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def noise(seconds: float, sample_rate: int = 16_000) -> np.ndarray:
    return RNG.uniform(-0.3, 0.3, int(seconds * sample_rate)).astype(np.float32)


GOOD = encoded(noise(2.0))
# id -> (audio bytes or None, reference or None)
CASES = {
    "corrupt": (b"RIFF" + bytes(range(256)) * 8, "some words"),
    "unknown-format": (b"this is a text file, not audio", "some words"),
    "truncated-flac": (encoded(noise(2.0), fmt="FLAC", subtype="PCM_16")[:3000], "some words"),
    "zero-length": (encoded(np.zeros(0, np.float32)), "some words"),
    "nan-samples": (encoded(np.where(np.arange(16_000) % 100 == 0, np.nan, 0.1), subtype="FLOAT"), "some words"),
    "no-audio": (None, "some words"),
    "truncated-wav": (GOOD[: len(GOOD) // 2], "some words"),  # libsndfile reads the samples present
    "silent": (encoded(np.zeros(32_000, np.float32)), "nothing is said here"),
    "stereo-44k": (encoded(np.stack([noise(1.5, 44_100), noise(1.5, 44_100)], axis=1), 44_100), "two channels"),
    "mono-8k": (encoded(noise(2.5, 8_000), 8_000), "telephone rate"),
    "three-minutes": (encoded(noise(180.0)), "a long clip " * 20),
    "empty-reference": (GOOD, ""),
    "missing-reference": (GOOD, None),
    "non-english": (GOOD, "Привет, как дела у тебя сегодня?"),
}
REJECTED = {
    "corrupt": "undecodable audio (LibsndfileError: Error opening the audio bytes: Format not recognised.)",
    "unknown-format": "undecodable audio (LibsndfileError: Error opening the audio bytes: Format not recognised.)",
    "truncated-flac": "undecodable audio (LibsndfileError: Internal psf_fseek() failed.)",
    "zero-length": "zero-length audio (no samples)",
    "nan-samples": "160 of 16000 samples are NaN or infinite",
    "no-audio": "no audio in the row",
}


@pytest.fixture(scope="module")
def bad_dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    rows = {"id": [], "audio": [], "text": []}
    for uid, (audio, text) in CASES.items():
        rows["id"].append(uid)
        rows["audio"].append({"bytes": audio, "path": f"{uid}.wav"} if audio is not None else None)
        rows["text"].append(text)
    write_hub_shard(rows, folder)
    return folder


def dataset_overrides(folder):
    return ["dataset=sample", f"dataset.path={folder}", "dataset.name=bad"]


def test_unusable_audio_is_rejected_with_its_reason_and_the_rest_is_handled(bad_dataset):
    rejected: list[Failure] = []
    cfg = compose_config(*dataset_overrides(bad_dataset))
    loaded = {u.id: u for u in load_utterances(cfg.dataset, progress=False, rejected=rejected)}
    assert {f.id: f.reason for f in rejected} == REJECTED
    assert all(f.stage == "input" for f in rejected)
    assert set(loaded) == set(CASES) - set(REJECTED)
    assert len(loaded["truncated-wav"].audio) < 32_000 and np.isfinite(loaded["truncated-wav"].audio).all()
    assert not loaded["silent"].audio.any() and len(loaded["silent"].audio) == 32_000
    stereo = loaded["stereo-44k"].audio
    assert stereo.ndim == 1 and len(stereo) == 24_000  # 1.5 s, downmixed, resampled to 16 kHz
    assert len(loaded["mono-8k"].audio) == 40_000
    assert loaded["three-minutes"].duration_s == pytest.approx(180.0)
    assert loaded["missing-reference"].reference == "" and loaded["missing-reference"].reference_missing
    assert loaded["empty-reference"].reference == "" and not loaded["empty-reference"].reference_missing


def test_on_error_fail_stops_at_the_first_unusable_clip_and_names_it(bad_dataset):
    cfg = compose_config(*dataset_overrides(bad_dataset))
    with pytest.raises(BenchError, match=r"utterance corrupt of dataset bad: undecodable audio.*run\.on_error=skip"):
        load_utterances(cfg.dataset, progress=False)


def test_a_run_over_bad_input_records_every_case_and_goes_on(bad_dataset, tmp_path):
    cfg = compose_config(
        *dataset_overrides(bad_dataset),
        "engine=openai_whisper",
        "model=whisper_large_v3",
        "model.weights=random",
        "model.scale=tiny",
        "run.progress=false",
        "run.on_error=skip",
        "run.batch_size=4",
    )
    summary = bench.pipeline.runner.run(cfg, tmp_path)
    rows = pd.read_parquet(tmp_path / "utterances.parquet").set_index("id")
    assert len(rows) == len(CASES) and summary.n_utterances == len(CASES)
    assert summary.n_failed == len(REJECTED) == summary.failures["input"]
    assert summary.failures["engine"] == 0
    assert rows.loc[list(REJECTED), "error"].to_dict() == REJECTED
    ok = rows[rows.status == "ok"]
    assert set(ok.index) == set(CASES) - set(REJECTED)
    # random weights decode exactly the reference's token count, long-form included
    assert (ok.n_tokens == ok.target_tokens).all() and ok.loc["three-minutes", "n_tokens"] > 0
    assert ok.loc["silent", "n_tokens"] == ok.loc["silent", "target_tokens"]
    assert summary.n_missing_references == 1 and summary.n_empty_references == 2
    assert rows.loc["non-english", "warning"] == "reference is mostly in a non-Latin script, in an English run"
    assert summary.reference_warnings == {
        "no reference text in the dataset: scored as an empty reference": 1,
        "empty reference: every hypothesis word counts as an insertion": 1,
        "reference is mostly in a non-Latin script, in an English run": 1,
    }
    # short- and long-form figures apart; the long clip is a batch of its own
    assert summary.by_form["long"]["n_utterances"] == 1
    assert summary.by_form["short"]["n_utterances"] == len(CASES) - 1 - len(REJECTED)
    assert summary.by_form["long"]["audio_seconds"] == pytest.approx(180.0)
    batches = pd.read_parquet(tmp_path / "batches.parquet")
    assert batches[batches.long_form].n_utterances.tolist() == [1]


def test_an_empty_audio_cell_is_no_audio_even_with_a_file_of_its_name_here(tmp_path, monkeypatch):
    folder = tmp_path / "data"
    rows = {
        "id": ["empty", "good"],
        "audio": [{"bytes": b"", "path": "decoy.wav"}, {"bytes": GOOD, "path": "good.wav"}],
        "text": ["some words", "some words"],
    }
    write_hub_shard(rows, folder)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "decoy.wav").write_bytes(encoded(noise(3.0)))  # a file of that name in the working directory
    cfg = compose_config(*dataset_overrides(folder))
    rejected: list[Failure] = []
    utterances = load_utterances(cfg.dataset, progress=False, rejected=rejected)
    assert [u.id for u in utterances] == ["good"]
    assert [(f.id, f.reason) for f in rejected] == [("empty", "no audio in the row (its audio bytes are empty)")]


def test_a_row_without_bytes_reads_its_file_only_by_full_path(tmp_path, monkeypatch):
    """A local audiofolder row holds no bytes and the file's full path; a bare name is no audio."""
    (tmp_path / "clip.wav").write_bytes(GOOD)
    rows = {
        "id": ["by-full-path", "by-bare-name"],
        "audio": [{"bytes": None, "path": str(tmp_path / "clip.wav")}, {"bytes": None, "path": "clip.wav"}],
        "text": ["some words", "some words"],
    }
    write_hub_shard(rows, tmp_path / "data")
    monkeypatch.chdir(tmp_path)  # a file of the bare name is right here, and still not read
    rejected: list[Failure] = []
    dataset = compose_config(*dataset_overrides(tmp_path / "data")).dataset
    utterances = load_utterances(dataset, progress=False, rejected=rejected)
    assert [(u.id, len(u.audio)) for u in utterances] == [("by-full-path", 32_000)]
    assert [(f.id, f.reason) for f in rejected] == [("by-bare-name", "no audio in the row")]


def test_a_dataset_without_the_id_column_names_the_setting(tmp_path):
    folder = tmp_path / "noid"
    write_hub_shard({"audio": [{"bytes": GOOD, "path": "a.wav"}], "text": ["words"]}, folder)
    cfg = compose_config(*dataset_overrides(folder))
    with pytest.raises(BenchError, match=r"no column 'id' .* dataset.id_column=null to number the rows"):
        load_utterances(cfg.dataset, progress=False)
    cfg = compose_config(*dataset_overrides(folder), "dataset.id_column=null")
    assert [u.id for u in load_utterances(cfg.dataset, progress=False)] == ["test-000000"]
