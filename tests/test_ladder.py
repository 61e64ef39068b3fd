"""bench.ladder: its plan covers every Whisper engine, and a call again measures only what is missing."""

import subprocess
from pathlib import Path

import pytest

from bench.engines import engine_config_classes
from bench.engines.whisper_patched import PATCHES as WHISPER_PATCHES
from bench.lab import ladder


def test_the_plan_runs_every_whisper_engine_on_every_model_voice_and_batch_size():
    plan = ladder.read_plan()
    rungs = ladder.rungs(plan)
    whisper = {name for name, config in engine_config_classes().items() if config.family == "whisper"}
    assert set(plan["engines"]) == whisper  # a new Whisper engine joins the ladder or this fails
    alone = [r for r in rungs if not r.paired_with and not r.without]
    combos = {(r.model, r.dataset, r.batch_size) for r in alone}
    assert len(combos) == len(plan["models"]) * len(plan["datasets"]) * len(plan["batch_sizes"]) == 8
    for combo in combos:
        here = sorted(r.label for r in alone if (r.model, r.dataset, r.batch_size) == combo)
        assert here == sorted([*whisper, "faster_whisper_int8"])
    int8 = next(r for r in alone if r.variant == "int8")
    assert int8.overrides()[-1] == "engine.compute_type=int8" and "device=cpu" in int8.overrides()
    paired = [r for r in rungs if r.paired_with]
    assert [r.batch_size for r in paired] == plan["batch_sizes"] and rungs[: len(paired)] == paired
    assert "run.paired_with=[faster_whisper,openai_whisper]" in paired[0].overrides()
    assert {r.repeats for r in paired} == {3} and {r.repeats for r in alone} == {plan["repeats"]}
    assert {r.repeats for r in ladder.rungs(plan, repeats=2) if not r.paired_with} == {2}
    ablated = [r for r in rungs if r.without]
    assert rungs[-len(ablated) :] == ablated  # last: the least needed
    assert [(r.without, r.batch_size) for r in ablated] == [("packed_linears", b) for b in plan["batch_sizes"]]
    kept = [o for o in ablated[0].overrides() if o.startswith("engine.patches=")]
    assert kept == [f"engine.patches=[{','.join(p for p in WHISPER_PATCHES if p != 'packed_linears')}]"]
    assert len({r.folder(Path("out")) for r in rungs}) == len(rungs)  # no two runs share a folder


def test_a_call_again_measures_only_what_is_missing_and_a_failure_does_not_stop_the_rest(tmp_path, monkeypatch):
    rungs = ladder.rungs(ladder.read_plan())[:4]
    done, partial, failing, fresh = rungs
    (done.folder(tmp_path)).mkdir(parents=True)
    (done.folder(tmp_path) / "summary.json").write_text("{}")
    partial.folder(tmp_path).mkdir(parents=True)
    (partial.folder(tmp_path) / "progress.json").write_text("{}")  # a run cut off: measured again from scratch
    ran = []

    def fake_run(command, **kwargs):
        folder = Path(next(a for a in command if a.startswith("hydra.run.dir=")).split("=", 1)[1])
        ran.append(folder)
        assert not (folder / "progress.json").exists()
        if folder == failing.folder(tmp_path):
            return subprocess.CompletedProcess(command, 1, "", "Traceback ...\nBenchError: out of memory\n")
        (folder / ".hydra").mkdir(parents=True, exist_ok=True)
        (folder / "summary.json").write_text("{}")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(ladder.subprocess, "run", fake_run)
    missing = ladder.measure(rungs, tmp_path, budget_minutes=None)
    assert ran == [r.folder(tmp_path) for r in (partial, failing, fresh)]
    assert missing == [failing]
    assert not (fresh.folder(tmp_path) / ".hydra").exists()  # Hydra's copy of config.yaml is not kept
    assert "BenchError: out of memory" in (failing.folder(tmp_path) / "error.txt").read_text()
    ran.clear()
    assert ladder.measure(rungs, tmp_path, budget_minutes=None) == [failing]
    assert ran == [failing.folder(tmp_path)]  # only the failed one again


def test_an_ablation_of_a_patch_the_engine_lacks_is_refused():
    plan = ladder.read_plan()
    plan["ablation"] = {**plan["ablation"], "without": ["warp_drive"]}
    with pytest.raises(SystemExit, match="has no patch 'warp_drive'"):
        ladder.rungs(plan)
