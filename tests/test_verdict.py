"""The verdict at the top of a reference folder's README: each model on its fastest engine, the
models' bests compared by the stated rule, and a model judged without its faster path said so."""

import pandas as pd
from run_folders import make_run

from bench.analysis.runs import load_runs
from bench.lab.verdict import verdict_lines


def _runs(tmp_path, timings: dict[str, float], noise=0.0):
    for engine, seconds in timings.items():
        make_run(tmp_path / "runs" / engine, engine=engine, seconds_per_batch=seconds, noise=noise, weights="random")
    return load_runs([str(tmp_path / "runs")])


def test_each_model_on_its_fastest_engine_and_the_ratio_of_the_bests(tmp_path):
    runs = _runs(tmp_path, {"voxtral_stock": 4.0, "voxtral_patched": 1.0, "whisper_hf": 3.0, "whisper_patched": 2.0})
    ceilings = pd.DataFrame(
        {"batch": [1], "voxtral_patched step / ceiling": [1.5], "whisper_patched step / roofline": [4.0]}
    )
    lines = verdict_lines(runs, ceilings)
    table = [line for line in "\n".join(lines).splitlines() if line.startswith("| 1 |")]
    assert table == [  # RTFx 10 and 5: 10 s of audio a batch in 1 s and 2 s, every batch alike
        "| 1 | voxtral_mini_3b | voxtral_patched | 10.0 | [10.00, 10.00] | 1.50 | n/a | 2 |",
        "| 1 | whisper_large_v3 | whisper_patched | 5.00 | [5.00, 5.00] | n/a | 4.00 | 2 |",
    ]
    said = "- batch 1: voxtral_mini_3b on voxtral_patched is 2.00x [2.00, 2.00] whisper_large_v3 on whisper_patched"
    assert f"{said}: faster (the interval lies above 1)." in lines
    assert not any("judged without" in line for line in lines)  # both faster paths measured


def test_a_model_without_its_faster_path_is_named_and_a_tie_is_within_noise(tmp_path):
    runs = _runs(tmp_path, {"voxtral_patched": 2.0, "openai_whisper": 2.0})
    lines = verdict_lines(runs, None)
    assert (
        "- batch 1: whisper_large_v3 is judged without its faster path whisper_patched (no run at this batch size "
        "here): its figure is of openai_whisper, not of the model at its best."
    ) in lines
    assert (
        "- batch 1: voxtral_mini_3b on voxtral_patched is 1.00x [1.00, 1.00] whisper_large_v3 on openai_whisper: "
        "within noise (the interval holds 1)."
    ) in lines


def test_the_faster_model_is_named_first_and_nothing_without_synthetic_runs(tmp_path):
    runs = _runs(tmp_path, {"voxtral_patched": 3.0, "whisper_patched": 1.0})
    lines = verdict_lines(runs, None)
    said = "- batch 1: whisper_large_v3 on whisper_patched is 3.00x [3.00, 3.00] voxtral_mini_3b on voxtral_patched"
    assert f"{said}: faster (the interval lies above 1)." in lines
    other = tmp_path / "other"
    make_run(other / "a", engine="voxtral_patched", dataset="sample")
    assert verdict_lines(load_runs([str(other)]), None) == []


def test_a_verdict_across_leases_says_so(tmp_path):
    """Two bests measured on different leases (boot ids) get the sentence; on one lease, none."""
    import json

    runs = _runs(tmp_path, {"voxtral_patched": 1.0, "whisper_patched": 2.0})
    for run, boot in zip(runs, ("aaaaaaaa-1", "bbbbbbbb-2"), strict=True):
        summary = json.loads((run.path / "summary.json").read_text())
        summary["environment"]["lease"] = {"boot_id": boot, "gpu_uuid": "GPU-12345678-9"}
        (run.path / "summary.json").write_text(json.dumps(summary))
    lines = verdict_lines(load_runs([str(tmp_path / "runs")]), None)
    said = "(measured on different leases (aaaaaaaa/12345678, bbbbbbbb/12345678): the interval does not hold"
    assert any(said in line for line in lines)
    one_lease = tmp_path / "one"
    runs = _runs(one_lease, {"voxtral_patched": 1.0, "whisper_patched": 2.0})
    for run in runs:
        summary = json.loads((run.path / "summary.json").read_text())
        summary["environment"]["lease"] = {"boot_id": "aaaaaaaa-1", "gpu_uuid": "GPU-12345678-9"}
        (run.path / "summary.json").write_text(json.dumps(summary))
    lines = verdict_lines(load_runs([str(one_lease / "runs")]), None)
    assert any("faster" in line for line in lines) and not any("different leases" in line for line in lines)
