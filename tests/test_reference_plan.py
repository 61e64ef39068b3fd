"""The reference plan in order of value, its minutes estimated from the folder, and the budget
weighed against those estimates (the measuring itself replaced by a runner that sleeps)."""

import json
import time
from pathlib import Path

import pytest

from bench.lab import budget, grid, reference
from bench.lab.grid import Point, Settings, measure
from bench.lab.load_stage import LoadPoint
from bench.lab.plans import STAGES, stage_of

ENGINES = ["openai_whisper", "voxtral_compile", "voxtral_patched", "voxtral_stock", "whisper_hf", "whisper_patched"]


def _plan(*extra: str) -> list[Point]:
    args = reference.parse(["--out", "x", "--device", "cuda", "--engines", *ENGINES, *extra])
    return reference.command_points(args, args.out)


def test_the_verdict_comes_first_then_the_batch_1_ablation_then_the_load_then_the_rest():
    plan = _plan()  # the defaults: three datasets, batch 1, 8 and 32, ablations at 1 and 32, load at 1, 16, 64
    stages = [stage_of(p, [1, 8, 32], [1, 32]) for p in plan]
    assert stages == sorted(stages) and set(stages) == {0, 1, 2, 3}
    verdict = plan[: stages.count(0)]
    # the faster paths at both batch sizes, then the engines they are faster paths of, then the others
    assert verdict[:4] == [  # each profiled: where its decode step goes
        Point("synthetic", engine, batch, profile=True)
        for batch in (1, 32) for engine in ("voxtral_patched", "whisper_patched")
    ]  # fmt: skip
    assert [p.engine for p in verdict[4:8]] == ["voxtral_stock", "whisper_hf"] * 2
    assert {(p.dataset, p.batch_size, p.without) for p in verdict} == {("synthetic", 1, None), ("synthetic", 32, None)}
    assert {p.engine for p in verdict} == set(ENGINES) and len(verdict) == 2 * len(ENGINES)
    ablation = plan[len(verdict) : len(verdict) + stages.count(1)]
    assert {p.engine for p in ablation} == {"voxtral_patched", "whisper_patched"}
    assert all(p.without and p.batch_size == 1 for p in ablation)
    load = plan[len(verdict) + len(ablation) : len(verdict) + len(ablation) + stages.count(2)]
    assert load == [LoadPoint("voxtral_patched", (1, 16, 64), 32), LoadPoint("whisper_patched", (1, 16, 64), 32)]
    rest = plan[len(verdict) + len(ablation) + len(load) :]
    assert {p.batch_size for p in rest if p.dataset == "synthetic" and not p.without} == {8}
    assert {p.batch_size for p in rest if p.without} == {32}
    assert {p.dataset for p in rest} == {"synthetic", "synthetic_librispeech_like", "sample"}
    assert len(set(plan)) == len(plan)  # each point once


def test_an_estimate_takes_the_nearest_measured_point_and_errs_long():
    known = {
        Point("synthetic", "a", 1): (60.0, True),
        Point("synthetic", "a", 32): (90.0, True),
        Point("sample", "a", 32): (120.0, True),
        Point("synthetic", "b", 1): (30.0, False),  # a lower bound from the run's own timings
    }
    assert budget.estimate_seconds(Point("synthetic", "a", 1), known) == (60.0, True)  # its own
    assert budget.estimate_seconds(Point("synthetic", "a", 32, without="x"), known) == (90.0, True)  # same dataset
    assert budget.estimate_seconds(Point("other", "a", 32), known) == (120.0, True)  # same batch: the longest
    assert budget.estimate_seconds(Point("synthetic", "a", 8), known) == (120.0, True)  # same engine
    assert budget.estimate_seconds(Point("synthetic", "b", 8), known) == (30.0, False)
    assert budget.estimate_seconds(Point("synthetic", "c", 1), known) == (120.0, True)  # any point
    assert budget.estimate_seconds(Point("synthetic", "c", 1), {}) is None


@pytest.fixture
def sleeping_runner(monkeypatch):
    """bench.pipeline.runner.run replaced by one that sleeps `seconds[engine]` and writes a summary."""
    calls, seconds = [], {}

    def run(cfg, folder):
        calls.append(folder.name)
        time.sleep(seconds.get(cfg.engine, 0.0))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "summary.json").write_text("{}")

    def config(point, settings):
        from types import SimpleNamespace

        return SimpleNamespace(engine=point.engine, profile=False)

    monkeypatch.setattr("bench.pipeline.runner.run", run)
    monkeypatch.setattr(grid, "point_config", config)
    return calls, seconds


def test_a_load_point_is_weighed_by_its_own_estimate_not_by_a_run_of_its_engine(
    tmp_path, sleeping_runner, monkeypatch, capsys
):
    calls, seconds = sleeping_runner
    seconds["a"] = 1.0

    def load_main(argv):
        out = Path(argv[argv.index("--out") + 1])
        for level in (1, 2):  # the level folders bench.load writes
            (out / f"c{level}").mkdir(parents=True)
            (out / f"c{level}" / "summary.json").write_text("{}")
        return 0

    monkeypatch.setattr("bench.online.load.main", load_main)
    served = LoadPoint("a", (1, 2), 2)
    # after a's 1 s run, 0.5 s of budget is left: the load point's own estimate (0.01 s) fits;
    # guessed from the run of the same engine (1 s), it would not start
    left = measure([Point("synthetic", "a", 1), served], tmp_path, Settings(), budget_minutes=1.5 / 60,
                   estimate=lambda p: 0.01)  # fmt: skip
    assert left == [] and served.done(tmp_path)
    # a load point of an engine never loaded, with nothing to estimate it from: it waits to
    # start the next call, however much budget is left (guessed from a's run, it would start)
    second = LoadPoint("b", (1, 2), 2)
    left = measure(
        [Point("synthetic", "b", 1), second], tmp_path, Settings(), budget_minutes=10, estimate=lambda p: None
    )
    assert left == [second] and not second.folder(tmp_path).exists()
    assert f"{second.title} has no estimate until a first run of its kind" in capsys.readouterr().out
    assert measure([second], tmp_path, Settings(), budget_minutes=10, estimate=lambda p: None) == []  # first: starts


def test_a_call_on_an_empty_folder_estimates_its_later_points_from_its_first(tmp_path, sleeping_runner):
    calls, seconds = sleeping_runner
    seconds.update({"a": 0.2, "b": 0.2})
    plan = [Point("synthetic", "a", 1), Point("synthetic", "b", 1)]
    # b has no point of its own engine yet: the folder's estimate (a's 0.2 s) lets it start; an
    # estimate from what the folder held before the call (nothing) would leave it to the next call
    assert measure(plan, tmp_path, Settings(), budget_minutes=10, estimate=budget.folder_estimate(tmp_path)) == []
    assert calls == ["a_b1", "b_b1"]


def test_each_point_records_its_seconds_and_the_next_call_plans_with_them(tmp_path, sleeping_runner):
    calls, seconds = sleeping_runner
    seconds.update({"a": 1.0, "b": 0.2})
    first = [Point("synthetic", "a", 1), Point("synthetic", "b", 1)]
    assert measure(first, tmp_path, Settings()) == []
    recorded = budget.point_seconds(tmp_path)
    assert recorded[first[0]][0] == pytest.approx(1.0, abs=0.2) and recorded[first[0]][1] is True
    assert recorded[first[1]][0] == pytest.approx(0.2, abs=0.2)
    # the next call, with 0.8 s of budget: after b's 0.2 s, a's point is expected to take 1 s (its
    # engine's earlier point), so it does not start; guessed from this call's longest point (b's
    # 0.2 s) instead, it would
    second = [Point("synthetic", "b", 2), Point("synthetic", "a", 2)]
    expected = lambda p: budget.expected_seconds(p, recorded)  # noqa: E731
    assert measure(second, tmp_path, Settings(), budget_minutes=0.8 / 60, estimate=expected) == second[1:]
    assert calls[2:] == ["b_b2"]


def test_the_plan_printed_before_measuring_says_what_is_measured_and_its_minutes(tmp_path, sleeping_runner):
    plan = [Point("synthetic", "a", 1), Point("synthetic", "a", 32), Point("sample", "a", 1)]
    assert measure(plan[:1], tmp_path, Settings()) == []
    point_file = plan[0].folder(tmp_path) / grid.POINT_FILE
    point_file.write_text(json.dumps(json.loads(point_file.read_text()) | {"seconds": 90.0}))

    def stage(p):
        return 0 if p.dataset == "synthetic" else 3

    known = budget.point_seconds(tmp_path)
    lines = budget.plan_lines(plan, tmp_path, known, list(STAGES), stage, budget_minutes=2)
    assert lines[0] == f"Plan for {tmp_path}: 3 points, 1 measured; in this order:"
    assert lines[1].startswith("1. verdict:") and lines[4].startswith("4. the rest:")
    assert lines[2] == "   measured  synthetic a batch 1: 1.5 min"
    assert lines[3] == "   to do     synthetic a batch 32: 1.5 min"
    assert lines[-1].startswith("To do: 2 points, 3.0 min; budget 2 min")
    left = budget.left_lines(plan[1:], known, list(STAGES), stage)
    assert left == [
        "Left for the next call (the same command again): 2 points, 3.0 min:",
        "1. verdict: 1 points, 1.5 min: synthetic a batch 32",
        "4. the rest: 1 points, 1.5 min: sample a batch 1",
    ]


def test_where_the_minutes_of_the_measured_points_went(tmp_path):
    from run_folders import make_run

    point = Point("synthetic", "voxtral_patched", 1)
    make_run(point.folder(tmp_path), engine="voxtral_patched")
    summary = point.folder(tmp_path) / "summary.json"
    # a run measured before the warm-up was split: its first warm-up batch, whole
    timings = {"load_seconds": 12.0, "cold_start_seconds": 30.0, "repeat_processing_seconds": [4.0, 4.0, 4.0],
               "profile": {"seconds": 3.0}}  # fmt: skip
    summary.write_text(json.dumps(json.loads(summary.read_text()) | timings))
    assert budget.where_minutes_went([point], tmp_path, budget.point_seconds(tmp_path)) is None  # no wall time
    (point.folder(tmp_path) / grid.POINT_FILE).write_text(json.dumps({**vars(point), "seconds": 60.0}))
    assert budget.where_minutes_went([point], tmp_path, budget.point_seconds(tmp_path)) == (
        "Where the minutes of 1 point(s) went: 1.00 min in all: engine load 0.20 (20%), compile 0.00 (0%), "
        "capture 0.00 (0%), warm-up, the rest 0.50 (50%), timed passes 0.20 (20%), profiles 0.05 (5%), "
        "the rest 0.05 (5%)."
    )
    # one measured since: its warm-up batches (33 s, the first 30 of them) split into 18 s of
    # compiles, 6 s of captures and the rest; the rest of the point shrinks by the 3 s more warm-up
    split = {"warmup_seconds": 33.0, "compile_seconds": 18.0, "capture_seconds": 6.0}
    summary.write_text(json.dumps(json.loads(summary.read_text()) | split))
    assert budget.where_minutes_went([point], tmp_path, budget.point_seconds(tmp_path)) == (
        "Where the minutes of 1 point(s) went: 1.00 min in all: engine load 0.20 (20%), compile 0.30 (30%), "
        "capture 0.10 (10%), warm-up, the rest 0.15 (15%), timed passes 0.20 (20%), profiles 0.05 (5%), "
        "the rest 0.00 (0%)."
    )
    summary.write_text(json.dumps(json.loads(summary.read_text()) | timings | dict.fromkeys(split)))
    with_start = budget.where_minutes_went([point], tmp_path, budget.point_seconds(tmp_path), started=9.0)
    assert with_start.endswith("the rest 0.05 (5%). Before the first point, the process's start: 0.15 min.")
    # each call a row of the folder's minutes table: 12 s timed of 60 + 9 + 3 (ceilings) + 6 (tables) = 78 s
    parts = budget.minute_parts([point], tmp_path, budget.point_seconds(tmp_path))
    budget.record_call(tmp_path, parts, 9.0, {"ceilings": 3.0, "tables": 6.0}, 1)
    text = budget.record_call(tmp_path, parts | {"timed passes": 60.0, "engine load": 0.0}, None, {}, 1)
    rows = (tmp_path / budget.MINUTES_FILE).read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("call (UTC),points,process start,engine load,")
    shares = [line.rsplit("|", 2)[1].strip() for line in text.splitlines() if line.startswith("| 20")]
    # 12 s of 78: below the 40% goal; then 60 s of the second call's 60 + 30 + 3 + 3 = 96 s: above it
    assert shares == ["15% (below the goal)", "62% (meets the goal)"]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="the process start is read from Linux's /proc")
def test_the_process_start_is_read_from_the_system():
    import subprocess
    import sys

    # a process that sleeps before asking has been running at least that long, and not much longer
    code = "import time; time.sleep(1.5); from bench.lab.budget import process_seconds; print(process_seconds())"
    age = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert 1.5 <= age < 30


def _measured_load_point(out, point: LoadPoint, seconds: float) -> None:
    """A load point's folder as grid.measure leaves it: a run folder per level and its point.json."""
    for folder in point.level_folders(out):
        folder.mkdir(parents=True)
        (folder / "summary.json").write_text("{}")
    (point.folder(out) / grid.POINT_FILE).write_text(json.dumps({**vars(point), "seconds": seconds}))


def test_a_load_point_is_estimated_from_load_points_and_a_run_from_runs(tmp_path):
    run, served = Point("synthetic", "a", 1), LoadPoint("a", (1, 16, 64), 32)
    run.folder(tmp_path).mkdir(parents=True)
    (run.folder(tmp_path) / "summary.json").write_text("{}")
    (run.folder(tmp_path) / grid.POINT_FILE).write_text(json.dumps({**vars(run), "seconds": 90.0}))
    _measured_load_point(tmp_path, served, 300.0)
    known = budget.point_seconds(tmp_path)
    assert known == {run: (90.0, True), served: (300.0, True)}  # the levels read back as a tuple
    # another engine's load point: from the load point, not from the (shorter) run of the same engine
    assert budget.estimate_seconds(LoadPoint("b", (1, 16, 64), 32), known) == (300.0, True)
    assert budget.estimate_seconds(Point("synthetic", "a", 8), known) == (90.0, True)  # and a run from runs
    assert budget.estimate_seconds(LoadPoint("b"), {run: (90.0, True)}) is None  # no load measured yet
    todo = [Point("synthetic", "a", 8), LoadPoint("b")]
    lines = budget.plan_lines(todo, tmp_path, {run: (90.0, True)}, list(STAGES), lambda p: 0, None)
    assert lines[-1] == "To do: 2 points: 1 at 1.5 min, 1 unknown until a first run of their kind."
    went = budget.where_minutes_went([served], tmp_path, known)
    assert "load stage 5.00 (100%)" in went


def test_a_load_point_serves_the_plan_s_engine_and_loads_it_at_each_level(tmp_path, monkeypatch):
    called = []

    def load_main(argv):  # bench.load's main: the level folders it would write
        called.append(argv)
        out = tmp_path / "ref" / "load" / "voxtral_patched"
        for level in (1, 16, 64):
            (out / f"c{level}").mkdir(parents=True)
            (out / f"c{level}" / "summary.json").write_text("{}")
        return 0

    monkeypatch.setattr("bench.online.load.main", load_main)
    point = LoadPoint("voxtral_patched", (1, 16, 64), 32)
    settings = Settings(scale="tiny", device="cpu", dtype="float32")
    assert measure([point], tmp_path / "ref", settings) == [] and point.done(tmp_path / "ref")
    argv = called[0]
    assert argv[argv.index("--concurrency") + 1] == "1,16,64" and argv[argv.index("--requests") + 1] == "256"
    assert "--stream" in argv and "dataset=synthetic_librispeech_like" in argv
    assert argv[argv.index("--out") + 1] == str(point.folder(tmp_path / "ref"))
    assert argv[argv.index("--serve") + 1].split() == [
        "engine=voxtral_patched", "model.weights=random", "model.scale=tiny", "device=cpu", "dtype=float32",
        "run.batch_size=32", "serve.max_queue=64",
    ]  # fmt: skip
    recorded = json.loads((point.folder(tmp_path / "ref") / grid.POINT_FILE).read_text())
    assert recorded["levels"] == [1, 16, 64] and recorded["seconds"] >= 0
    assert budget.point_seconds(tmp_path / "ref") == {point: (recorded["seconds"], True)}


def test_a_failed_load_is_kept_with_its_reason_and_not_taken_for_done(tmp_path, monkeypatch):
    monkeypatch.setattr("bench.online.load.main", lambda argv: 2)
    point = LoadPoint("voxtral_patched", (1, 2), 2)
    assert measure([point], tmp_path, Settings()) == [point]
    assert "bench.load exited with status 2" in (point.folder(tmp_path) / "error.txt").read_text()
    assert not point.done(tmp_path)
