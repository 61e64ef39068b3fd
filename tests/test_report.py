"""Comparison and release tables, plots and the recommendation, on synthetic run folders."""

import pandas as pd
import pytest
from run_folders import make_run

from bench.analysis.comparison import comparison_frame, recommend
from bench.analysis.report import main
from bench.analysis.runs import load_runs


def test_comparison_table_and_files(tmp_path, capsys):
    make_run(tmp_path / "runs" / "a", engine="voxtral_patched", seconds_per_batch=0.2, errors=[1] * 20)
    make_run(tmp_path / "runs" / "b", engine="whisper_large_v3", seconds_per_batch=0.5, errors=[2] * 20)
    make_run(tmp_path / "runs" / "c", engine="voxtral_patched", seconds_per_batch=1.0, batch_size=8)
    out = tmp_path / "out"
    assert main([str(tmp_path / "runs" / "*"), "--out", str(out)]) == 0
    table = pd.read_csv(out / "comparison.csv")
    assert sorted(table.engine) == ["voxtral_patched", "voxtral_patched", "whisper_large_v3"]
    assert table.loc[table.engine == "whisper_large_v3", "WER"].item() == pytest.approx(0.2)  # 40 / 200
    assert (out / "wer_vs_rtfx.png").stat().st_size > 0 and (out / "rtfx_vs_batch.png").exists()
    assert "Recommended: voxtral_patched" in capsys.readouterr().out


def test_mixed_hardware_or_data_is_refused_with_the_reason(tmp_path, capsys):
    make_run(tmp_path / "a", hardware="NVIDIA H100 x1")
    make_run(tmp_path / "b", hardware="NVIDIA H200 x1", engine="whisper_large_v3")
    assert main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "o")]) == 2
    assert "hardware differs" in capsys.readouterr().err
    assert main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "o"), "--allow-mixed"]) == 0
    make_run(tmp_path / "c", dataset="librispeech_test_clean")
    assert main([str(tmp_path / "a"), str(tmp_path / "c"), "--out", str(tmp_path / "o")]) == 2
    assert "datasets differ" in capsys.readouterr().err


def test_release_table_marks_changes(tmp_path):
    make_run(tmp_path / "v1" / "p", engine="voxtral_patched", seconds_per_batch=1.0, errors=[1] * 20, seed=1)
    make_run(tmp_path / "v1" / "w", engine="whisper_large_v3", seconds_per_batch=1.0, errors=[1] * 20, seed=2)
    make_run(tmp_path / "v2" / "p", engine="voxtral_patched", seconds_per_batch=0.7, errors=[1] * 20, seed=3)
    make_run(tmp_path / "v2" / "w", engine="whisper_large_v3", seconds_per_batch=1.0, errors=[3] * 20, seed=4)
    out = tmp_path / "out"
    assert main(["--baseline", str(tmp_path / "v1"), "--candidate", str(tmp_path / "v2"), "--out", str(out)]) == 0
    table = pd.read_csv(out / "release.csv").set_index("engine")
    assert table.loc["voxtral_patched", "RTFx"] == "better"
    assert table.loc["voxtral_patched", "RTFx Δ%"] == pytest.approx(100 * (1 / 0.7 - 1), rel=0.05)
    assert table.loc["voxtral_patched", "WER"] == "noise"
    assert table.loc["whisper_large_v3", "RTFx"] == "noise"
    assert table.loc["whisper_large_v3", "WER"] == "worse"  # 10% -> 30%
    assert table.loc["whisper_large_v3", "WER Δ"] == pytest.approx(0.2)


def frame_of(tmp_path, specs):
    for name, (engine, seconds, errors, peak) in specs.items():
        make_run(tmp_path / name, engine=engine, seconds_per_batch=seconds, errors=[errors] * 20, peak_gib=peak)
    return comparison_frame(load_runs([str(tmp_path)]))


def test_recommendation_follows_the_constraints(tmp_path):
    frame = frame_of(
        tmp_path,
        {
            "fast_inaccurate": ("voxtral_patched", 0.1, 3, 10.0),  # RTFx 100, WER 30%
            "slow_accurate": ("whisper_large_v3", 0.5, 1, 5.0),  # RTFx 20, WER 10%
            "middle": ("voxtral_stock", 0.25, 1, 50.0),  # RTFx 40, WER 10%, big memory
        },
    )
    assert recommend(frame).startswith("Recommended: voxtral_stock")  # best WER, fastest among equals
    assert recommend(frame, max_memory_gib=20).startswith("Recommended: whisper_large_v3")
    assert recommend(frame, min_rtfx=60).startswith("Recommended: voxtral_patched")
    assert recommend(frame, max_wer=0.2, min_rtfx=60).startswith("No configuration has WER <= 0.2 and RTFx >= 60;")


def test_random_weights_recommend_on_speed_alone_and_say_so(tmp_path):
    make_run(tmp_path / "a", engine="voxtral_patched", seconds_per_batch=0.1, weights="random")
    make_run(tmp_path / "b", engine="voxtral_stock", seconds_per_batch=0.5, weights="random")
    text = recommend(comparison_frame(load_runs([str(tmp_path)])), max_wer=0.1)
    assert text.startswith("Recommended: voxtral_patched") and "speed alone" in text


def test_each_model_is_judged_on_its_fastest_engine(tmp_path):
    runs = {
        "voxtral_stock": 1.0, "voxtral_patched": 0.2,  # Voxtral: RTFx 10 and 50
        "whisper_large_v3": 0.5, "whisper_patched": 0.25,  # Whisper: RTFx 20 and 40
    }  # fmt: skip
    for engine, seconds in runs.items():
        make_run(tmp_path / engine, engine=engine, seconds_per_batch=seconds, weights="random", noise=0.0)
    text = recommend(comparison_frame(load_runs([str(tmp_path)])))
    assert text.startswith("Recommended: voxtral_patched at batch 1 on voxtral_mini_3b (full), with RTFx 50.0")
    assert "It is the fastest among all 4 measured configurations (no constraints were given)." in text
    assert (
        "Each model at its best: voxtral_mini_3b (full): voxtral_patched (batch 1, RTFx 50.0); "
        "whisper_large_v3 (full): whisper_patched (batch 1, RTFx 40.0)."
    ) in text
    # the slow openai-whisper engine is not what Whisper is judged on
    assert "whisper_large_v3 (batch" not in text


def test_with_real_wers_a_wer_constraint_excludes_an_engine(tmp_path):
    """On the committed real-weight runs (tiny.en, faster_whisper 0.28, openai-whisper 0.281):
    a WER limit between the two leaves only faster_whisper, one below both leaves none."""
    from bench.config import REPO_DIR

    frame = comparison_frame(load_runs([str(REPO_DIR / "results" / "real_weights" / "cpu" / "run")]))
    assert sorted(frame.engine) == ["faster_whisper", "whisper_large_v3"] and frame["WER"].notna().all()
    text = recommend(frame, max_wer=0.2805)
    assert text.startswith("Recommended: faster_whisper") and "WER 28.00%" in text
    assert "among the 1 of 2 measured configurations with WER <= 0.2805" in text and "speed alone" not in text
    assert recommend(frame, max_wer=0.25).startswith("No configuration has WER <= 0.25;")


def test_a_sweep_report_lists_every_job_and_the_ones_that_failed(tmp_path):
    from bench.analysis.sweep import sweep_report

    make_run(tmp_path / "0_voxtral_patched_b1", engine="voxtral_patched", weights="random")
    make_run(tmp_path / "1_voxtral_stock_b1", engine="voxtral_stock", weights="random", seconds_per_batch=2.0)
    (tmp_path / "2_whisper_large_v3_b1").mkdir()
    (tmp_path / "2_whisper_large_v3_b1" / "error.txt").write_text("bench: error: out of disk\n\ncommand: x\n")
    text = sweep_report(tmp_path)
    assert text.startswith("\n# The whole sweep: 2 runs\n")
    assert "| voxtral_patched |" in text and "| voxtral_stock |" in text
    assert "Recommended: voxtral_patched" in text
    assert f"- {tmp_path / '2_whisper_large_v3_b1'}: bench: error: out of disk" in text
    assert (tmp_path / "report" / "comparison.md").exists() and (tmp_path / "report" / "report.html").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert sweep_report(empty).startswith(f"No job of the sweep in {empty} finished")
