"""A dataset is known by what was measured, not by the name of the YAML it came from."""

import json
import subprocess

import pytest
from conftest import bench_command, compose_config
from run_folders import make_run

from bench.analysis.comparison import check_comparable
from bench.analysis.runs import load_runs
from bench.config import REPO_DIR
from bench.data import dataset_name, load_utterances, utterances_fingerprint
from bench.errors import BenchError


def test_a_path_override_names_the_dataset_after_the_path(tmp_path):
    assert dataset_name(compose_config().dataset) == "sample"
    assert dataset_name(compose_config(f"dataset.path={tmp_path}").dataset) == tmp_path.name
    hub = compose_config("dataset=librispeech_test_clean", "dataset.path=someone/their_asr_set").dataset
    assert dataset_name(hub) == "someone/their_asr_set"
    assert dataset_name(compose_config("dataset=librispeech_test_clean").dataset) == "librispeech_test_clean"
    # a name given with the path (no YAML of that name) is the user's own
    assert dataset_name(compose_config("dataset.name=mine", f"dataset.path={tmp_path}").dataset) == "mine"


def test_the_fingerprint_follows_the_clips_not_the_name():
    sample = compose_config("dataset=sample").dataset
    first = load_utterances(sample, limit=3, progress=False)
    again = load_utterances(sample, limit=3, progress=False)
    other = load_utterances(sample, limit=4, progress=False)
    assert utterances_fingerprint(first) == utterances_fingerprint(again) != utterances_fingerprint(other)
    trimmed = [first[0].__class__(u.id, u.audio[:-1], u.reference) for u in first]
    assert utterances_fingerprint(trimmed) != utterances_fingerprint(first)  # same ids, other audio


def test_report_and_gate_match_runs_by_fingerprint(tmp_path):
    a = make_run(tmp_path / "a", engine="voxtral_stock", dataset="sample", fingerprint="1111")
    b = make_run(tmp_path / "b", engine="voxtral_patched", dataset="sample", fingerprint="2222")
    with pytest.raises(BenchError, match="datasets differ"):
        check_comparable(load_runs([str(a), str(b)]), allow_mixed=False)
    c = make_run(tmp_path / "c", engine="voxtral_patched", dataset="renamed", fingerprint="1111")
    check_comparable(load_runs([str(a), str(c)]), allow_mixed=False)  # same clips, another name: comparable

    from bench.analysis.gate import main

    baseline = tmp_path / "baseline.json"
    assert main(["--write-baseline", str(a), "--out", str(baseline)]) == 0
    other_clips = make_run(tmp_path / "d", engine="voxtral_stock", dataset="sample", fingerprint="3333")
    assert main(["--baseline", str(baseline), "--candidate", str(other_clips)]) == 2  # nothing to compare
    same_clips = make_run(tmp_path / "e", engine="voxtral_stock", dataset="sample", fingerprint="1111", seed=4)
    assert main(["--baseline", str(baseline), "--candidate", str(same_clips)]) == 0


@pytest.mark.slow
def test_a_run_on_another_folder_reports_that_folder(tmp_path, offline_env):
    import shutil

    folder = tmp_path / "my_clips"
    shutil.copytree(REPO_DIR / "bench" / "data" / "sample", folder)
    run_dir = tmp_path / "run"
    args = ["engine=openai_whisper", "model=whisper_large_v3", "model.weights=random", "model.scale=tiny",
            "run.progress=false", "run.limit=2", f"dataset.path={folder}", f"hydra.run.dir={run_dir}"]  # fmt: skip
    out = subprocess.run(bench_command(*args), capture_output=True, text=True, env=offline_env, cwd=REPO_DIR)
    assert out.returncode == 0, out.stderr[-2000:]
    dataset = json.loads((run_dir / "summary.json").read_text())["dataset"]
    assert dataset["name"] == "my_clips" and len(dataset["fingerprint"]) == 16


def test_nothing_to_compare_says_which_key_differs(tmp_path, capsys):
    from bench.analysis.gate import main

    base = make_run(tmp_path / "a", engine="voxtral_stock", dataset="sample", fingerprint="1111", n_batches=8)
    baseline = tmp_path / "baseline.json"
    assert main(["--write-baseline", str(base), "--out", str(baseline)]) == 0
    fewer = make_run(tmp_path / "b", engine="voxtral_stock", dataset="sample", fingerprint="2222", n_batches=4)
    assert main(["--baseline", str(baseline), "--candidate", str(fewer)]) == 2
    err = capsys.readouterr().err
    assert "nothing to compare: no candidate run or ratio matches the baseline" in err
    # only the clips differ: 4 batches of 10 s against 8
    assert "differs from the closest baseline run in the utterances (dataset fingerprint)" in err
    assert "40.0 s of audio here, 80.0 s in the baseline" in err
    wider = make_run(tmp_path / "c", engine="voxtral_stock", dataset="sample", fingerprint="1111", n_batches=8,
                     batch_size=4)  # fmt: skip
    assert main(["--baseline", str(baseline), "--candidate", str(wider)]) == 2
    assert "differs from the closest baseline run in batch size 4 here, 1 in the baseline" in capsys.readouterr().err
