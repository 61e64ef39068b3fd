"""An engine's former name (openai_whisper was whisper_large_v3): taken on the command line with a
line that says so, mapped when an older run folder is read, and such a folder continued."""

import json

from run_folders import make_run

from bench.analysis.runs import load_runs
from bench.config import REPO_DIR
from bench.engines import accept_former_name, engine_class, former_spelling
from bench.lab import grid, ladder
from bench.lab.reference_folder import provenance_lines
from bench.pipeline.record import Summary


def test_a_former_name_is_taken_and_said(capsys):
    assert accept_former_name("whisper_large_v3") == "openai_whisper"
    said = capsys.readouterr().err
    assert said == "bench: engine whisper_large_v3 is the former name of openai_whisper; running that\n"
    assert accept_former_name("whisper_hf") == "whisper_hf" and capsys.readouterr().err == ""
    assert engine_class("whisper_large_v3") is engine_class("openai_whisper")


def test_a_run_measured_under_the_former_name_reads_as_the_current_one(tmp_path):
    make_run(tmp_path / "old", engine="whisper_patched")
    path = tmp_path / "old" / "summary.json"
    data = json.loads(path.read_text()) | {"engine": "whisper_large_v3", "paired_with": ["whisper_large_v3"]}
    path.write_text(json.dumps(data))
    summary = Summary.read(tmp_path / "old")
    assert (summary.engine, summary.paired_with) == ("openai_whisper", ["openai_whisper"])
    assert summary.named_when_measured == "whisper_large_v3" and "named_when_measured" not in summary.to_dict()
    lines = provenance_lines(load_runs([str(tmp_path / "old")]))
    said = "- openai_whisper was named whisper_large_v3 when measured: its folders and commands here say "
    assert f"{said}whisper_large_v3." in lines


def test_a_folder_named_the_former_way_is_continued_not_measured_again(tmp_path):
    point = grid.Point("synthetic", "openai_whisper", 1)
    assert point.folder(tmp_path).name == "openai_whisper_b1"  # nothing measured: the current spelling
    old = tmp_path / "runs" / "synthetic" / "whisper_large_v3_b1"
    make_run(old, engine="openai_whisper")
    assert point.folder(tmp_path) == old and grid.is_done(point, tmp_path)
    assert grid.measured_points(tmp_path) == [point]  # read from the folder's name: the current engine
    assert former_spelling("whisper_patched_with_faster_whisper_openai_whisper") == (
        "whisper_patched_with_faster_whisper_whisper_large_v3"
    )


def test_the_committed_ladder_needs_no_run_again_after_the_rename():
    """Every rung of conf/ladder.yaml (which names openai_whisper) finds its committed folder."""
    out = REPO_DIR / "results" / "real_weights" / "cpu_ladder"
    plan = ladder.rungs(ladder.read_plan())
    renamed = [r for r in plan if "openai_whisper" in (r.engine, *r.paired_with)]
    assert renamed and all(r.is_done(out) for r in renamed)
    assert "whisper_large_v3" in str(renamed[0].folder(out))


def test_a_partner_named_the_former_way_is_taken_and_said(capsys):
    from bench.pipeline.runner import partner_engine_config

    assert partner_engine_config("whisper_large_v3").name == "openai_whisper"  # run.paired_with=[whisper_large_v3]
    assert "engine whisper_large_v3 is the former name of openai_whisper" in capsys.readouterr().err
