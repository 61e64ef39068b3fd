"""bench.lab.grid (resumable points inside a time budget) and bench.reference (the results folder)."""

import json
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
from run_folders import make_run

import bench.pipeline.runner
from bench.analysis.runs import load_runs
from bench.config import REPO_DIR
from bench.engines import _history, engine_class
from bench.engines.voxtral_patched import PATCHES
from bench.host.energy import CPU_NOTE
from bench.lab import grid
from bench.lab.folder import record_command, recorded_commands, without_budget
from bench.lab.grid import Point, Settings, measure, measured_points
from bench.lab.load_stage import LoadPoint
from bench.lab.plans import plan_device_type, reference_points
from bench.lab.reference import planned_points
from bench.lab.reference_folder import ratio_frame
from bench.lab.speed import INCOMPLETE
from bench.pipeline.record import Summary


@pytest.fixture
def fake_runner(monkeypatch):
    """bench.pipeline.runner.run replaced by one that takes `seconds` and writes a summary.json."""
    calls, seconds = [], [0.0]

    def run(cfg, folder):
        calls.append(folder)
        time.sleep(seconds[0])
        folder.mkdir(parents=True, exist_ok=True)
        profile = {"invariants_broken": []} if cfg.profile else None  # as the runner records a profile now
        (folder / "summary.json").write_text(json.dumps({"batch_size": cfg.run.batch_size, "profile": profile}))
        if cfg.profile:
            (folder / "profile.md").write_text("# profile\n")

    monkeypatch.setattr("bench.pipeline.runner.run", run)
    monkeypatch.setattr(grid, "point_config", lambda point, settings: _cfg(point))
    return calls, seconds


def _cfg(point):
    from types import SimpleNamespace

    return SimpleNamespace(run=SimpleNamespace(batch_size=point.batch_size), profile=point.profile)


def test_a_run_of_older_code_is_measured_again_one_of_today_s_is_kept(tmp_path, fake_runner):
    """bench 0.3.0 ran voxtral_patched before 0.4.0 added grouped_attention and attention_window
    (bench.engines._history); nothing of voxtral_stock or of timing changed since 0.2.0."""
    calls, _ = fake_runner
    older, current = Point("synthetic", "voxtral_patched", 1), Point("synthetic", "voxtral_stock", 1)
    for point in (older, current):
        point.folder(tmp_path).mkdir(parents=True)
        (point.folder(tmp_path) / "summary.json").write_text(json.dumps({"environment": {"bench": "0.3.0"}}))
    changes = len([c for c in _history.CHANGES if c.version == "0.4.0" and c.what.startswith("voxtral_patched")])
    assert changes == 2 and current.done(tmp_path)  # grouped_attention, attention_window
    assert older.not_done_because(tmp_path) == (
        f"measured by bench 0.3.0, before {changes} change(s) to voxtral_patched or to timing since"
    )
    measure([older, current], tmp_path, Settings())
    assert calls == [older.folder(tmp_path)]


def test_measure_keeps_finished_points_and_remeasures_half_measured_ones(tmp_path, fake_runner):
    calls, _ = fake_runner
    done, half, new = Point("synthetic", "a", 1), Point("synthetic", "b", 1), Point("sample", "a", 8)
    done.folder(tmp_path).mkdir(parents=True)
    (done.folder(tmp_path) / "summary.json").write_text("{}")
    half.folder(tmp_path).mkdir(parents=True)
    (half.folder(tmp_path) / "progress.json").write_text("{}")  # a call cut off mid-point
    assert measure([done, half, new], tmp_path, Settings()) == []
    assert calls == [half.folder(tmp_path), new.folder(tmp_path)]
    assert not (half.folder(tmp_path) / "progress.json").exists()  # measured again from scratch
    assert measure([done, half, new], tmp_path, Settings()) == [] and len(calls) == 2  # nothing left to do


def test_a_failing_point_is_recorded_and_the_grid_goes_on(tmp_path, fake_runner, monkeypatch):
    calls, _ = fake_runner
    points = [Point("synthetic", "a", 1), Point("synthetic", "broken", 1), Point("synthetic", "c", 1)]
    fake = bench.pipeline.runner.run  # the fixture's

    def run(cfg, folder):
        if "broken" in folder.name:
            calls.append(folder)
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        fake(cfg, folder)

    monkeypatch.setattr("bench.pipeline.runner.run", run)
    assert measure(points, tmp_path, Settings()) == [points[1]]
    assert len(calls) == 3 and (points[2].folder(tmp_path) / "summary.json").exists()
    assert "illegal memory access" in (points[1].folder(tmp_path) / "error.txt").read_text()
    assert measure(points, tmp_path, Settings()) == [points[1]] and calls[-1] == points[1].folder(tmp_path)


def test_a_profiled_point_without_its_profile_is_not_done(tmp_path, fake_runner):
    calls, _ = fake_runner
    point = Point("synthetic", "voxtral_stock", 1, profile=True)
    point.folder(tmp_path).mkdir(parents=True)
    (point.folder(tmp_path) / "summary.json").write_text("{}")
    measure([point], tmp_path, Settings())
    assert calls == [point.folder(tmp_path)] and (point.folder(tmp_path) / "profile.md").exists()
    assert point.done(tmp_path)


def test_a_profile_taken_before_its_trace_was_checked_is_taken_again(tmp_path, fake_runner, capsys):
    calls, _ = fake_runner
    point = Point("synthetic", "voxtral_stock", 1, profile=True)
    point.folder(tmp_path).mkdir(parents=True)
    (point.folder(tmp_path) / "summary.json").write_text(json.dumps({"profile": {"merge_kernels": 18}}))
    (point.folder(tmp_path) / "profile.md").write_text("# profile\n")
    why = "its profile was taken before the phase table was checked on its trace"
    assert point.not_done_because(tmp_path) == why and not point.done(tmp_path)
    measure([point], tmp_path, Settings())
    assert calls == [point.folder(tmp_path)] and point.done(tmp_path)
    assert f"{point.folder(tmp_path)}: {why}; measuring it again from scratch" in capsys.readouterr().out


def test_budget_stops_before_a_point_that_would_not_fit(tmp_path, fake_runner):
    calls, seconds = fake_runner
    seconds[0] = 0.3
    points = [Point("synthetic", "a", b) for b in (1, 2, 4)]
    # 0.5 s: the first point (0.3 s) always starts; 0.3 s spent + 0.3 s expected for the next > 0.5 s
    left = measure(points, tmp_path, Settings(), budget_minutes=0.5 / 60)
    assert left == points[1:] and len(calls) == 1
    assert measure(points, tmp_path, Settings(), budget_minutes=10) == [] and len(calls) == 3


def test_measured_points_read_back_from_folder_names(tmp_path):
    points = [
        Point("synthetic", "voxtral_patched", 32, without="cuda_graph"),
        Point("synthetic_librispeech_like", "openai_whisper", 8),
        Point("synthetic", "voxtral_stock", 1, profile=True),
    ]
    for p in points:
        p.folder(tmp_path).mkdir(parents=True)
        (p.folder(tmp_path) / "summary.json").write_text("{}")
        if p.profile:
            (p.folder(tmp_path) / "profile.md").write_text("")
    assert sorted(measured_points(tmp_path), key=str) == sorted(points, key=str)


def test_point_config_sizes_every_dataset_by_batch():
    settings = Settings(scale="tiny", min_clips=8)
    synthetic = grid.point_config(Point("synthetic", "voxtral_patched", 32, without="cuda_graph"), settings)
    assert synthetic.dataset.n_clips == 64 and synthetic.run.batch_size == 32 and synthetic.run.repeats == 5
    assert "cuda_graph" not in synthetic.engine.patches and "static_cache" in synthetic.engine.patches
    sample = grid.point_config(Point("sample", "openai_whisper", 1), settings)
    assert sample.run.limit == 8 and sample.model.name == "whisper_large_v3"  # each engine keeps its model


def test_reference_plan_holds_the_grid_the_ablation_and_the_profiles():
    points = reference_points(
        ["voxtral_stock", "voxtral_compile", "voxtral_patched", "openai_whisper"],
        ["synthetic", "synthetic_librispeech_like", "sample"],
        [1, 8, 32],
        [1, 32],
        "cuda",
    )
    # on CUDA every patch is ablated but packed_linears, which acts on the CPU only
    assert len(points) == len(set(points)) == 4 * 3 * 3 + (len(PATCHES) - 1) * 2
    assert {p.without for p in points if p.without} == set(PATCHES) - {"packed_linears"}
    # the note's merge at batch 1, and the faster path's decode at every batch size
    assert {(p.engine, p.dataset, p.batch_size) for p in points if p.profile} == {
        ("voxtral_stock", "synthetic", 1),
        ("voxtral_patched", "synthetic", 1),
        ("voxtral_patched", "synthetic", 8),
        ("voxtral_patched", "synthetic", 32),
    }
    assert points[0].dataset == "synthetic"  # the speed points first: they matter most if a call runs out


def test_ratio_frame_by_hand(tmp_path):
    runs = [
        make_run(tmp_path / "p1", "voxtral_patched", seconds_per_batch=1.0, noise=0.0, batch_size=1),
        make_run(tmp_path / "s1", "voxtral_stock", seconds_per_batch=5.0, noise=0.0, batch_size=1),
        make_run(tmp_path / "w1", "openai_whisper", seconds_per_batch=2.0, noise=0.0, batch_size=1),
        make_run(tmp_path / "s8", "voxtral_stock", seconds_per_batch=3.0, noise=0.0, batch_size=8),  # no partner
    ]
    ratios = ratio_frame(load_runs([str(r) for r in runs]), "voxtral_patched")
    assert list(zip(ratios.batch, ratios.vs, strict=True)) == [(1, "openai_whisper"), (1, "voxtral_stock")]
    # equal batches: the ratio of RTFs is exact, and so is every bootstrap draw
    assert ratios["speed-up"].tolist() == pytest.approx([2.0, 5.0])
    assert ratios.low.tolist() == pytest.approx([2.0, 5.0]) and ratios.high.tolist() == pytest.approx([2.0, 5.0])


def test_a_ratio_of_runs_over_the_same_batches_is_resampled_with_one_draw(tmp_path):
    """Short and long clips (3 to 20 s, as synthetic_librispeech_like): each run's own RTF moves
    with which clips a draw picks, but stock takes 1.65 times patched's time on every batch, so a
    draw that picks the same batches of both gives 1.65 every time: the interval is that point.
    Resampled apart, as these tables once were, it spread over clip choice ([1.19, 2.04] on the H200)."""
    durations = [3.0, 20.0, 5.0, 17.0, 8.0, 12.0, 4.0, 19.0]
    runs = [
        make_run(tmp_path / "p", "voxtral_patched", seconds_per_batch=1.0, noise=0.0, durations=durations),
        make_run(tmp_path / "s", "voxtral_stock", seconds_per_batch=1.65, noise=0.0, durations=durations),
    ]
    r = ratio_frame(load_runs([str(p) for p in runs]), "voxtral_patched").iloc[0]
    assert r["speed-up"] == pytest.approx(1.65)
    assert r.low == pytest.approx(1.65) and r.high == pytest.approx(1.65)


def test_ratio_interval_covers_the_point_estimate_under_noise(tmp_path):
    runs = [
        make_run(tmp_path / "p", "voxtral_patched", seconds_per_batch=1.0, noise=0.1, seed=1),
        make_run(tmp_path / "s", "voxtral_stock", seconds_per_batch=4.0, noise=0.1, seed=2),
    ]
    r = ratio_frame(load_runs([str(p) for p in runs]), "voxtral_patched").iloc[0]
    assert r.low < r["speed-up"] < r.high and r.low > 3.5 and r.high < 4.5


def test_the_recorded_command_leaves_out_the_budget_and_the_compile_cache():
    argv = ["--out", "x", "--budget-minutes", "8", "--repeats", "3", "--budget-minutes=2"]
    argv += ["--compile-cache", "/tmp/c", "--quiet", "--compile-cache=/tmp/d"]
    assert without_budget(argv) == ["--out", "x", "--repeats", "3", "--quiet"]


def test_every_command_that_measured_into_a_folder_is_kept_in_order(tmp_path):
    record_command(tmp_path, "bench.reference", ["--out", "x", "--engines", "voxtral_stock", "--budget-minutes", "3"])
    record_command(tmp_path, "bench.reference", ["--out", "x", "--engines", "voxtral_stock", "--budget-minutes", "9"])
    record_command(tmp_path, "bench.speed", ["--out", "x", "--batch-sizes", "1"])
    record_command(tmp_path, "bench.reference", ["--out", "x", "--engines", "voxtral_stock"])
    # the same call again after the budget ran out is one line; a different one in between is kept
    assert recorded_commands(tmp_path) == [
        "python -m bench.reference --out x --engines voxtral_stock",
        "python -m bench.speed --out x --batch-sizes 1",
        "python -m bench.reference --out x --engines voxtral_stock",
    ]


def test_an_older_folder_with_one_command_file_still_reads(tmp_path):
    (tmp_path / "command.txt").write_text("python -m bench.reference --out x\n")
    assert recorded_commands(tmp_path) == ["python -m bench.reference --out x"]


@pytest.mark.parametrize(("device_type", "inert"), [("cuda", "packed_linears"), ("cpu", "cuda_graph")])
def test_the_ablation_leaves_out_the_patch_inert_on_the_device(device_type, inert):
    for engine in ("voxtral_patched", "whisper_patched"):
        points = reference_points([engine], ["synthetic"], [], [1], device_type)
        removed = [p.without for p in points if p.without]
        assert removed == [p for p in engine_class(engine).PATCHES if p != inert]


def test_a_plan_is_for_the_device_its_runs_recorded(tmp_path):
    assert plan_device_type("cpu", None) == "cpu" and plan_device_type("cuda:1", tmp_path) == "cuda"
    here = "cuda" if torch.cuda.is_available() else "cpu"
    assert plan_device_type("auto", tmp_path) == here  # no runs yet: what auto picks here
    run = tmp_path / "runs" / "synthetic" / "voxtral_patched_b1"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"device": "cuda"}))
    assert plan_device_type("auto", tmp_path) == "cuda"  # a GPU folder written again on a CPU machine


def test_the_plan_is_every_command_s_points_once_in_order(tmp_path):
    commands = [
        "# a comment line is not a command",
        "python -m bench.reference --out r --datasets synthetic --engines voxtral_stock voxtral_patched "
        "--batch-sizes 1 32 --ablation-batch-sizes",
        "python -m bench.agreement --out a --limit 8",  # measures elsewhere: not part of the grid
        "python -m bench.speed --out r --batch-sizes 1 --ablation-batch-sizes 1",
    ]
    run = tmp_path / "runs" / "synthetic" / "voxtral_stock_b1"  # the folder's runs ran on a GPU
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"device": "cuda"}))
    plan = planned_points(commands, tmp_path)
    assert len(plan) == len(set(plan))
    assert plan[:4] == [  # in the order of value: the faster path first
        Point("synthetic", "voxtral_patched", 1, profile=True),
        Point("synthetic", "voxtral_patched", 32, profile=True),
        Point("synthetic", "voxtral_stock", 1, profile=True),
        Point("synthetic", "voxtral_stock", 32),
    ]
    assert plan[4] == LoadPoint("voxtral_patched", (1, 16, 64), 32)  # the load stage, before the rest
    # bench.speed adds compile at batch 1 and the batch-1 ablation, nothing it repeats
    assert plan[5:] == [Point("synthetic", "voxtral_compile", 1)] + [
        Point("synthetic", "voxtral_patched", 1, without=patch) for patch in PATCHES if patch != "packed_linears"
    ]


@pytest.mark.slow
def test_reference_command_end_to_end_and_report_rewrites_the_same_files(tmp_path, offline_env):
    out = tmp_path / "ref"
    command = [sys.executable, "-m", "bench.reference", "--out", str(out), "--scale", "tiny",
               "--engines", "voxtral_stock", "voxtral_patched", "openai_whisper", "--datasets", "synthetic",
               "--batch-sizes", "1", "2", "--ablation-batch-sizes", "--repeats", "1", "--min-clips", "2",
               "--load-concurrency", "1", "2", "--quiet", "--compile-cache", str(tmp_path / "inductor")]  # fmt: skip
    # the rehearsal of a lease: a budget that stops the plan after its first point, then the rest
    cut = subprocess.run([*command, "--budget-minutes", "0.01"], capture_output=True, text=True, env=offline_env,
                         cwd=REPO_DIR, timeout=900)  # fmt: skip
    assert cut.returncode == INCOMPLETE, cut.stderr[-3000:]
    assert f"Plan for {out}: 7 points, 0 measured; in this order:" in cut.stdout
    assert "To do: 7 points, minutes unknown until a first run; budget 0.01 min" in cut.stdout
    assert "[1/7] synthetic voxtral_patched batch 1" in cut.stdout and "[2/7]" not in cut.stdout
    assert "Left for the next call (the same command again): 6 points" in cut.stdout
    # the compile went into the folder it was told of, empty before: every graph built, none read
    assert f"compile cache: {tmp_path / 'inductor'}, 0 graph(s) in it" in cut.stdout
    compiled = Summary.read(out / "runs/synthetic/voxtral_patched_b1").engine_report
    assert compiled["inductor_graphs_read_from_cache"] == 0 and compiled["inductor_graphs_built"] >= 1
    assert "--compile-cache" not in (out / "commands.txt").read_text()  # how long a call took, not what it measured
    first = subprocess.run(command, capture_output=True, text=True, env=offline_env, cwd=REPO_DIR, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "1 of 7 points already measured" in first.stdout
    order = [line.split("] ", 1)[1] for line in first.stdout.splitlines() if line.startswith("[")]
    assert order == [
        "synthetic voxtral_patched batch 2",
        "synthetic voxtral_stock batch 1",
        "synthetic voxtral_stock batch 2",
        "synthetic openai_whisper batch 1",
        "synthetic openai_whisper batch 2",
        "load: voxtral_patched served (batches of up to 2) at concurrency 1, 2",
    ]  # fmt: skip: the faster path first, then its stock engine, then the others, then the load stage
    readme = (out / "README.md").read_text()
    assert "## synthetic" in readme and "python -m bench.report --reference" in readme
    comparison = pd.read_csv(out / "comparison_synthetic.csv")
    assert sorted(zip(comparison.engine, comparison.batch, strict=True)) == [
        ("openai_whisper", 1), ("openai_whisper", 2),
        ("voxtral_patched", 1), ("voxtral_patched", 2), ("voxtral_stock", 1), ("voxtral_stock", 2),
    ]  # fmt: skip
    ratios = pd.read_csv(out / "ratios.csv")
    rtfx = {(r.engine, r.batch): r.RTFx for r in comparison.itertuples()}
    assert len(ratios) == 4
    for row in ratios.to_dict("records"):
        assert row["speed-up"] == pytest.approx(
            rtfx[("voxtral_patched", row["batch"])] / rtfx[(row["vs"], row["batch"])]
        )
        assert f"{row['speed-up']:.2f}x [{row['low']:.2f}, {row['high']:.2f}]" in readme
    profiles = (out / "profiles.md").read_text()
    # the note's merge at batch 1 (stock and the faster path), and the faster path at batch 2 too
    titles = [line for line in profiles.splitlines() if line.startswith("## ")]
    assert titles == [
        "## voxtral_patched, synthetic, batch 1", "## voxtral_stock, synthetic, batch 1",
        "## voxtral_patched, synthetic, batch 2",
    ]  # fmt: skip
    assert profiles.count("for 375 audio placeholders") == 2  # one 30 s clip: 375 placeholders merged
    # checked on each real trace (on the CPU: no device time to add up)
    assert profiles.count("- The phase table's invariants hold on this trace: its phases lie within the batch.") == 3
    assert (out / "rtfx_vs_batch_synthetic.png").exists()
    # the load stage: bench.serve started, loaded at each level by bench.load, its table in the README
    for level in (1, 2):
        served = Summary.read(out / "load" / "voxtral_patched" / f"c{level}")
        assert (served.batch_size, served.n_utterances, served.n_failed) == (level, 8, 0)
    assert "## Under load: the faster paths served (bench.load --serve)" in readme
    assert f"Energy (J/audio h): {CPU_NOTE}." in readme  # the folder's device.json: no counter on a CPU
    assert "### voxtral_patched, 8 requests a level, synthetic_librispeech_like" in readme

    def tables():  # every file but the minutes table, which gains a row a call
        return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and not p.name.startswith("minutes.")}

    files, calls = tables(), (out / "minutes.csv").read_text().splitlines()
    assert [line.split(",")[1] for line in calls] == ["points", "1", "6"]  # the cut call, then the rest
    again = subprocess.run(command, capture_output=True, text=True, env=offline_env, cwd=REPO_DIR, timeout=600)
    assert again.returncode == 0 and "7 of 7 points already measured" in again.stdout
    assert (out / "minutes.csv").read_text().splitlines()[:3] == calls  # and a row of 0 points
    assert (out / "minutes.csv").read_text().splitlines()[3].split(",")[1] == "0"
    report = subprocess.run(
        [sys.executable, "-m", "bench.report", "--reference", str(out)],
        capture_output=True, text=True, env=offline_env, cwd=REPO_DIR, timeout=600,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr[-3000:]
    assert tables() == files


def test_readme_lists_planned_runs_that_are_missing_and_why(tmp_path):
    from bench.lab.reference_folder import missing_lines

    command = (
        "python -m bench.reference --out x --engines voxtral_stock openai_whisper --datasets sample "
        "--batch-sizes 1 8 --ablation-batch-sizes"
    )
    done, failed = Point("sample", "voxtral_stock", 1), Point("sample", "openai_whisper", 8)
    done.folder(tmp_path).mkdir(parents=True)
    (done.folder(tmp_path) / "summary.json").write_text("{}")
    failed.folder(tmp_path).mkdir(parents=True)
    (failed.folder(tmp_path) / "error.txt").write_text("Traceback ...\ntorch.OutOfMemoryError: CUDA out of memory\n")
    lines = missing_lines(tmp_path, planned_points([command], tmp_path))
    assert lines[0].startswith("Not measured (yet): 3 of the 4 planned runs")
    assert "- sample openai_whisper batch 8: torch.OutOfMemoryError: CUDA out of memory" in lines
    assert "- sample voxtral_stock batch 8: not run yet" in lines
    assert not any("voxtral_stock batch 1" in line for line in lines)
    # a profiled run whose profile predates the check of its trace: in the tables, and to be measured again
    profiled = "python -m bench.reference --out x --engines voxtral_stock --datasets synthetic --batch-sizes 1 "
    profiled += "--ablation-batch-sizes"
    old = Point("synthetic", "voxtral_stock", 1, profile=True)
    old.folder(tmp_path).mkdir(parents=True)
    (old.folder(tmp_path) / "summary.json").write_text(json.dumps({"profile": {"merge_kernels": 18}}))
    (old.folder(tmp_path) / "profile.md").write_text("# profile\n")
    assert missing_lines(tmp_path, planned_points([profiled], tmp_path))[2] == (
        "- synthetic voxtral_stock batch 1: its profile was taken before the phase table was checked on its "
        "trace: its run, in the tables below, is measured again whole on the next call"
    )
