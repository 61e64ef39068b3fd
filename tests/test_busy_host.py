"""A busy host is said, not hidden: what else used the machine while a run was timed, the rule
that calls it busy, and every table, gate and recommendation that shows such a run."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from run_folders import make_run

from bench.analysis.gate import main as gate
from bench.analysis.recommendation import Constraints, recommend
from bench.analysis.report import compare
from bench.analysis.runs import load_runs
from bench.analysis.table import format_summaries
from bench.host import busy
from bench.host.busy import BUSY_OTHER_CORES, BUSY_STEAL, Reading, between, host_load
from bench.pipeline.record import Summary

BUSY = {"other_processes_cores": 0.98, "other_processes_cores_per_pass": [0.98], "steal_share": 0.0,
        "load_average_max": 3.1, "cpus": 2, "busy": True, "rule": busy.RULE}  # fmt: skip
IDLE = BUSY | {"other_processes_cores": 0.01, "other_processes_cores_per_pass": [0.01], "busy": False}


def test_other_processes_are_the_machines_busy_time_less_this_process_own():
    before = Reading(wall_s=10.0, machine_busy_s=500.0, steal_s=7.0, own_s=40.0, load_average=1.0)
    after = Reading(wall_s=12.0, machine_busy_s=503.5, steal_s=7.2, own_s=42.0, load_average=2.5)
    # 3.5 s of the machine's CPU in 2 s, 2 of them this process's own: 1.5 s by others
    assert between(before, after) == pytest.approx(
        {"host_span_s": 2.0, "others_cpu_s": 1.5, "steal_cpu_s": 0.2, "load_average": 2.5}
    )
    assert between(None, after) == dict.fromkeys(busy.COLUMNS)  # nothing read off Linux


def test_proc_stat_is_read_field_by_field(tmp_path):
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal guest guest_nice, in ticks
    stat.write_text("cpu  1000 20 300 90000 4000 5 6 70 800 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
    reading = busy.read(str(stat))
    tick = os.sysconf("SC_CLK_TCK")
    assert reading.machine_busy_s == pytest.approx((1000 + 20 + 300 + 5 + 6) / tick)  # idle, iowait, steal not
    assert reading.steal_s == pytest.approx(70 / tick)
    assert busy.read(str(tmp_path / "missing")) is None


def frame(others: list[float], spans: list[float], steal: float = 0.0, repeats: list[int] | None = None):
    return pd.DataFrame({"repeat": repeats or [0] * len(spans), "host_span_s": spans, "others_cpu_s": others,
                         "steal_cpu_s": [steal] * len(spans), "load_average": [1.0] * len(spans)})  # fmt: skip


def test_the_rule_calls_a_host_busy_from_its_threshold_up():
    below = BUSY_OTHER_CORES - 0.01
    assert host_load(frame([below, below], [1.0, 1.0]), cpus=2)["busy"] is False
    load = host_load(frame([BUSY_OTHER_CORES, BUSY_OTHER_CORES], [1.0, 1.0]), cpus=2)
    assert load["busy"] is True and load["other_processes_cores"] == pytest.approx(BUSY_OTHER_CORES)
    # steal: a share of the whole machine's CPU time (2 cores x 2 s)
    assert host_load(frame([0, 0], [1.0, 1.0], steal=2 * BUSY_STEAL * 0.99), cpus=2)["busy"] is False
    assert host_load(frame([0, 0], [1.0, 1.0], steal=2 * BUSY_STEAL), cpus=2)["busy"] is True


def test_the_figure_is_over_the_whole_run_and_each_pass():
    # a tick under on one short batch, a whole core for the second pass
    load = host_load(frame([-0.01, 0.01, 1.0], [0.5, 0.5, 1.0], repeats=[0, 0, 1]), cpus=2)
    assert load["other_processes_cores"] == pytest.approx(0.5)  # 1.0 s of 2.0 s
    assert load["other_processes_cores_per_pass"] == [0.0, 1.0]
    assert host_load(frame([0.1], [float("nan")]), cpus=2) is None  # a batch without a reading: no figure


def test_tables_gate_and_recommendation_mark_the_busy_run(tmp_path, capsys):
    make_run(tmp_path / "runs" / "stock", engine="voxtral_stock", seconds_per_batch=2.0, host_load=IDLE)
    make_run(tmp_path / "runs" / "patched", engine="voxtral_patched", seconds_per_batch=1.0, host_load=BUSY)
    runs = load_runs([str(tmp_path / "runs")])
    terminal = format_summaries([run.summary for run in runs])
    header, *rows = terminal.splitlines()
    assert header.split()[-1] == "host"
    assert {row.split()[0]: row.split()[-1] for row in rows[:2]} == {"voxtral_patched": "busy", "voxtral_stock": "n/a"}
    assert "voxtral_patched at batch 1 on voxtral_mini_3b (synthetic) was measured on a busy host (other " \
           "processes used 0.98 cores on average while it was timed; busy when" in terminal  # fmt: skip
    assert "voxtral_stock at batch 1 on voxtral_mini_3b (synthetic) was measured" not in terminal
    text = recommend(runs)
    assert text.splitlines()[1].startswith("voxtral_patched at batch 1 on voxtral_mini_3b (full) was measured on a "
                                           "busy host")  # fmt: skip
    (tmp_path / "report").mkdir()
    comparison = compare(runs, tmp_path / "report", Constraints())
    marks = comparison.table.set_index("engine").host
    assert marks["voxtral_patched"] == "busy" and pd.isna(marks["voxtral_stock"])
    assert "was measured on a busy host" in comparison.notes
    # the same runs idle: no column, no sentence
    quiet = [Summary.from_dict(run.summary.to_dict() | {"host_load": IDLE}) for run in runs]
    assert "host" not in format_summaries(quiet).splitlines()[0] and "busy" not in format_summaries(quiet)
    # the gate: the baseline file keeps its busy runs, the verdict says both
    make_run(tmp_path / "base" / "patched", engine="voxtral_patched", host_load=BUSY)
    assert gate(["--write-baseline", str(tmp_path / "base"), "--out", str(tmp_path / "baseline.json")]) == 0
    assert json.loads((tmp_path / "baseline.json").read_text())["busy_host"][0].startswith("voxtral_patched at")
    capsys.readouterr()
    gate(["--baseline", str(tmp_path / "baseline.json"), "--candidate", str(tmp_path / "runs" / "patched")])
    out = capsys.readouterr().out
    assert "WARNING: candidate voxtral_patched at batch 1" in out and "WARNING: baseline voxtral_patched" in out


@pytest.mark.slow
def test_a_run_under_a_synthetic_load_is_marked_busy(tmp_path, tiny_overrides):
    from bench.lab.busy_host import synthetic_load

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    command = [sys.executable, "-m", "bench", *tiny_overrides, "run.limit=8", f"hydra.run.dir={tmp_path / 'run'}"]
    with synthetic_load(2.0):  # two busy processes on top of whatever else this machine runs
        out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    load = json.loads((tmp_path / "run" / "summary.json").read_text())["host_load"]
    assert load["busy"] and load["other_processes_cores"] >= 0.5  # a core, give or take the scheduler
    assert out.stdout.splitlines()[0].split()[-1] == "host" and "was measured on a busy host" in out.stdout
