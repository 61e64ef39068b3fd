"""bench.lab.leases and bench.lab.sentinel: which lease measured each run of a folder, the sentinel a call on a new
lease measures again first, and how far points measured on two leases moved."""

import json
from types import SimpleNamespace

import pytest
import torch
from run_folders import make_run

from bench.analysis.runs import load_runs
from bench.lab import grid, leases, sentinel
from bench.lab.grid import Point, Settings, measure
from bench.lab.reference import measure_sentinel_first
from bench.lab.reference_folder import ratio_frame, ratio_markdown

OLD = {"lease": {"boot_id": "aaaaaaaa-1", "gpu_uuid": "GPU-11111111-x"}}  # label aaaaaaaa/11111111
HERE = leases.this_lease(torch.device("cpu"))


def _run(out, point: Point, seconds=1.0, environment=OLD, took=10.0):
    """A finished run of the point, with a point.json giving the seconds it took to measure."""
    folder = make_run(
        point.folder(out), engine=point.engine, batch_size=point.batch_size, seconds_per_batch=seconds,
        noise=0.0, weights="random", environment=environment,
    )  # fmt: skip
    (folder / grid.POINT_FILE).write_text(json.dumps({**point.__dict__, "seconds": took}))
    return folder


@pytest.fixture
def runner_here(monkeypatch):
    """bench.pipeline.runner.run replaced by one that writes a run of this machine's lease, twice
    as fast as _run's default (RTFx 20 against 10)."""
    calls = []

    def run(cfg, folder):
        calls.append(folder)
        point = cfg.point
        make_run(folder, engine=point.engine, batch_size=point.batch_size, seconds_per_batch=0.5, noise=0.0,
                 weights="random", environment={"lease": {"boot_id": HERE, "gpu_uuid": None}})  # fmt: skip
        if point.profile:
            summary = json.loads((folder / "summary.json").read_text())
            (folder / "summary.json").write_text(json.dumps(summary | {"profile": {"invariants_broken": []}}))
            (folder / "profile.md").write_text("# profile\n")

    monkeypatch.setattr("bench.pipeline.runner.run", run)
    monkeypatch.setattr(grid, "point_config", lambda point, settings: SimpleNamespace(point=point))
    return calls


def test_a_run_s_lease_is_recorded_or_stated_by_the_folder_else_unrecorded(tmp_path):
    a, b, c = (Point("synthetic", e, 1) for e in ("voxtral_patched", "voxtral_stock", "openai_whisper"))
    _run(tmp_path, a)
    _run(tmp_path, b, environment={})
    _run(tmp_path, c, environment={"git_commit": None})
    (tmp_path / leases.PROVENANCE_FILE).write_text(json.dumps({"leases": {"2026-11-30": {
        "runs": ["runs/synthetic/voxtral_stock_b1"], "git_commit": "e8cd5de", "git_dirty": False}}}))  # fmt: skip

    def lease(point):
        folder = point.folder(tmp_path)
        return leases.run_lease(tmp_path, folder, json.loads((folder / "summary.json").read_text())["environment"])

    assert (lease(a), lease(b), lease(c)) == ("aaaaaaaa/11111111", "2026-11-30", leases.UNRECORDED)
    stated = leases.stated_environment(tmp_path, c.folder(tmp_path), {"git_commit": None})
    assert stated == {"git_commit": None}  # no lease stated for it: nothing filled in
    env = json.loads((b.folder(tmp_path) / "summary.json").read_text())["environment"] | {"git_commit": None}
    stated = leases.stated_environment(tmp_path, b.folder(tmp_path), env)
    assert stated["git_commit"] == "e8cd5de" and stated["commit_stated"] and stated["git_dirty"] is False
    recorded = json.loads((a.folder(tmp_path) / "summary.json").read_text())["environment"]
    assert leases.stated_environment(tmp_path, a.folder(tmp_path), recorded) == recorded  # "abc": its own


def test_the_sentinel_is_the_point_of_most_leases_then_the_cheapest_and_none_once_measured_here(tmp_path):
    cheap, dear, unplanned = Point("synthetic", "a", 1), Point("synthetic", "b", 1), Point("synthetic", "c", 1)
    _run(tmp_path, dear, took=50.0)
    _run(tmp_path, cheap, took=5.0)
    _run(tmp_path, unplanned, took=1.0)
    plan = [dear, cheap]
    assert sentinel.sentinel(tmp_path, plan, HERE) == cheap  # one lease each: the fewest seconds
    assert sentinel.sentinel(tmp_path, plan, "aaaaaaaa/11111111") is None  # no run of another lease
    # dear measured on a second lease: it is now the point of most leases
    leases.keep_earlier(tmp_path, dear.folder(tmp_path))
    _run(tmp_path, dear, environment={"lease": {"boot_id": "cccccccc-3"}}, took=50.0)
    assert sentinel.sentinel(tmp_path, plan, HERE) == dear
    # measured on this lease too: nothing to measure again
    leases.keep_earlier(tmp_path, dear.folder(tmp_path))
    _run(tmp_path, dear, environment={"lease": {"boot_id": HERE}})
    assert set(sentinel.measurements(tmp_path)[dear]) == {"aaaaaaaa/11111111", "cccccccc", HERE}
    assert sentinel.sentinel(tmp_path, plan, HERE) is None


def test_a_call_on_a_new_lease_measures_the_sentinel_first_and_keeps_its_earlier_run(tmp_path, runner_here, capsys):
    first, second = Point("synthetic", "voxtral_patched", 1), Point("synthetic", "voxtral_stock", 1)
    _run(tmp_path, first, took=30.0)
    _run(tmp_path, second, took=3.0)
    new = Point("synthetic", "whisper_patched", 1)
    args = SimpleNamespace(out=tmp_path, device="cpu")
    points = measure_sentinel_first([first, second, new], args)
    assert points == [second, first, new]  # the cheaper point, first
    assert "the sentinel synthetic voxtral_stock batch 1 is measured again first" in capsys.readouterr().out
    kept = tmp_path / leases.EARLIER / "aaaaaaaa-11111111" / "runs" / "synthetic" / "voxtral_stock_b1"
    assert (kept / "summary.json").exists() and not (second.folder(tmp_path) / "summary.json").exists()
    assert measure(points, tmp_path, Settings(device="cpu")) == []
    assert runner_here == [second.folder(tmp_path), new.folder(tmp_path)]  # first stays the earlier lease's
    # RTFx 10 on the earlier lease, 20 on this one: every batch alike, so exactly 2.00x
    (moved,) = sentinel.movements(tmp_path)
    assert (moved.point, moved.earlier, moved.later) == (second, "aaaaaaaa/11111111", HERE)
    assert moved.cell == "2.00x [2.00, 2.00]"
    assert measure_sentinel_first([first, second, new], args) == [first, second, new]  # measured here already


def test_a_run_of_another_lease_measured_again_is_kept_one_of_this_lease_is_not(tmp_path, runner_here):
    profiled = Point("synthetic", "voxtral_stock", 1, profile=True)
    _run(tmp_path, profiled)  # no profile.md: not done, so measured again
    measure([profiled], tmp_path, Settings(device="cpu"))
    kept = tmp_path / leases.EARLIER / "aaaaaaaa-11111111" / "runs" / "synthetic" / "voxtral_stock_b1"
    assert (kept / "summary.json").exists() and profiled.done(tmp_path)
    (profiled.folder(tmp_path) / "profile.md").unlink()  # this lease's run, to be measured again
    measure([profiled], tmp_path, Settings(device="cpu"))
    assert sorted(p.name for p in (tmp_path / leases.EARLIER).iterdir()) == ["aaaaaaaa-11111111"]
    assert len(list((tmp_path / leases.EARLIER).rglob("summary.json"))) == 1
    # a run that recorded no lease (and no provenance.json names one) says nothing about leases
    (profiled.folder(tmp_path) / "profile.md").unlink()
    summary = profiled.folder(tmp_path) / "summary.json"
    summary.write_text(json.dumps(json.loads(summary.read_text()) | {"environment": {}}))
    assert not leases.of_another_lease(tmp_path, profiled.folder(tmp_path), HERE)
    measure([profiled], tmp_path, Settings(device="cpu"))
    assert not (tmp_path / leases.EARLIER / leases.UNRECORDED).exists() and profiled.done(tmp_path)


def test_how_far_points_moved_and_the_words_beside_a_ratio_across_leases(tmp_path):
    point = Point("synthetic", "voxtral_stock", 1)
    _run(tmp_path, point, seconds=2.0, environment=OLD | {"timestamp": "2026-11-30T18:00:00"})
    leases.keep_earlier(tmp_path, point.folder(tmp_path))
    _run(tmp_path, point, seconds=2.5, environment={"lease": {"boot_id": "bbbbbbbb-2"}, "timestamp": "2026-12-04"})
    (moved,) = sentinel.movements(tmp_path)
    assert moved.cell == "0.80x [0.80, 0.80]"  # 2.0 s a batch, then 2.5 s
    note = sentinel.across_note("aaaaaaaa/11111111", "bbbbbbbb", [moved])
    assert note == (
        "measured on different leases (aaaaaaaa/11111111, bbbbbbbb), between which voxtral_stock batch 1 ran "
        "0.80x [0.80, 0.80] as fast on bbbbbbbb"
    )
    assert sentinel.across_note("x", "x", [moved]) == ""
    assert "no point was measured on both" in sentinel.across_note("x", "y", [moved])


def test_points_moved_alike_or_not_by_whether_their_intervals_lie_apart():
    def m(ratio, low, high):
        return sentinel.Movement(Point("synthetic", "e", 1), "a", "b", ratio, low, high)

    assert "did not move alike" in sentinel.spread_line([m(0.68, 0.44, 0.97), m(1.14, 1.12, 1.16)])
    assert "do not tell whether they moved alike" in sentinel.spread_line([m(0.9, 0.8, 1.15), m(1.1, 1.0, 1.2)])
    assert sentinel.spread_line([m(1.0, 0.9, 1.1)]) == ""


def test_changes_between_two_versions_count_the_engine_s_and_timing_s_only():
    from bench.engines._history import CHANGES

    expected = sum(1 for c in CHANGES if c.version == "0.2.0" and c.what.split(":")[0] in ("timing", "voxtral_stock"))
    assert expected > 0
    assert sentinel.changes_between("voxtral_stock", "0.1.0", "0.2.0") == expected
    assert sentinel.changes_between("voxtral_stock", "0.2.0", "0.2.0") == 0
    assert sentinel.changes_between("voxtral_stock", None, "0.2.0") == 0


def test_a_ratio_of_runs_of_two_leases_is_marked_and_named(tmp_path):
    make_run(tmp_path / "runs" / "p", engine="voxtral_patched", seconds_per_batch=1.0, noise=0.0, weights="random")
    make_run(tmp_path / "runs" / "s", engine="voxtral_stock", seconds_per_batch=3.0, noise=0.0, weights="random")
    runs = load_runs([str(tmp_path / "runs")])
    lease = {"voxtral_patched": "new", "voxtral_stock": "old"}
    frame = ratio_frame(runs, "voxtral_patched", lambda r: lease[r.summary.engine])
    assert frame.leases.tolist() == ["new vs old"]
    text = ratio_markdown(frame, "voxtral_patched")
    assert "| 1 | 3.00x [3.00, 3.00]¹ |" in text and "¹ runs of two leases (new vs old)" in text
    same = ratio_frame(runs, "voxtral_patched", lambda r: "one")
    assert same.leases.tolist() == [""] and "¹" not in ratio_markdown(same, "voxtral_patched")
    assert "leases" not in ratio_frame(runs, "voxtral_patched").columns  # no lease asked: no column


def test_an_ablation_is_set_against_the_all_on_run_of_its_own_lease(tmp_path):
    from bench.lab.speed import ablation_folders, ablation_row
    from bench.pipeline.record import Summary

    on, off = Point("synthetic", "voxtral_patched", 1), Point("synthetic", "voxtral_patched", 1, "cuda_graph")
    _run(tmp_path, on, seconds=1.0)
    _run(tmp_path, off, seconds=2.0)
    assert ablation_folders(tmp_path, [on, off]) == [on.folder(tmp_path), off.folder(tmp_path)]
    leases.keep_earlier(tmp_path, on.folder(tmp_path))
    _run(tmp_path, on, seconds=0.5, environment={"lease": {"boot_id": "bbbbbbbb-2"}})  # a later lease, faster
    folders = ablation_folders(tmp_path, [on, off])
    assert folders[0] == tmp_path / leases.EARLIER / "aaaaaaaa-11111111" / "runs" / "synthetic" / "voxtral_patched_b1"
    row = ablation_row(off, folders[1], Summary.read(folders[0]))
    assert row["vs all on"] == pytest.approx(0.5)  # against the same lease's 1.0 s, not the later 0.5 s
