"""`python -m bench` end to end, in subprocesses, as a user runs it."""

import contextlib
import io
import json
import subprocess

import pandas as pd
import pytest
from conftest import bench_command

from bench.analysis.report import main as report_main
from bench.config import REPO_DIR
from bench.engines import engine_class

SUMMARY_FIELDS = {
    "engine", "patches", "model", "model_id", "weights", "dtype", "batch_size", "dataset", "n_utterances",
    "n_failed", "audio_seconds", "processing_seconds", "model_seconds", "rtf", "rtfx", "rtfx_ci", "wer",
    "load_seconds", "cold_start_seconds", "latency_p50", "latency_p90", "latency_p99", "decode_tokens_per_s",
    "peak_gpu_memory_bytes", "environment",
}  # fmt: skip
ENVIRONMENT_FIELDS = {
    "hardware", "gpu_name", "gpu_count", "driver", "cuda", "torch", "transformers", "whisper", "git_commit",
    "timestamp", "host",
}  # fmt: skip
UTTERANCE_COLUMNS = {"id", "duration_s", "reference", "hypothesis", "n_tokens", "status", "latency_s"}
TINY = ["model.weights=random", "model.scale=tiny", "run.progress=false"]


def run_bench(args, env, timeout=300):
    return subprocess.run(bench_command(*args), capture_output=True, text=True, env=env, cwd=REPO_DIR, timeout=timeout)


@pytest.mark.slow
def test_quick_start_prints_a_table_and_writes_the_run_folder(tmp_path, offline_env):
    out = run_bench([*TINY, "run.limit=4", "run.batch_size=2", f"hydra.run.dir={tmp_path}"], offline_env)
    assert out.returncode == 0, out.stderr
    assert "RTFx" in out.stdout and "voxtral_patched" in out.stdout  # the default engine
    # bench's lines and table only: mistral_common's tokenizer logs its vocabulary at INFO
    assert "mistral_common" not in out.stdout + out.stderr and "[INFO]" not in out.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary) >= SUMMARY_FIELDS
    assert set(summary["environment"]) >= ENVIRONMENT_FIELDS
    assert summary["n_utterances"] == 4 and summary["wer"] is None and summary["weights"] == "random"
    assert summary["dataset"]["limit"] == 4 and summary["dataset"]["split"] == "test"
    # every patch on, and the engine's whole list beside them: a table shows "all"
    assert summary["patches"] == summary["engine_patches"] == list(engine_class("voxtral_patched").PATCHES)
    rows = pd.read_parquet(tmp_path / "utterances.parquet")
    assert set(rows.columns) >= UTTERANCE_COLUMNS and len(rows) == 4
    assert (rows.n_tokens == rows.target_tokens).all()
    assert (tmp_path / "config.yaml").exists() and (tmp_path / "batches.parquet").exists()


def test_unreachable_hub_dataset_is_one_line_not_a_traceback(tmp_path, offline_env):
    out = run_bench([*TINY, "dataset=librispeech_test_clean", f"hydra.run.dir={tmp_path}"], offline_env)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("bench: error:")]
    assert len(lines) == 1 and "dataset=sample" in lines[0]
    # the folder it leaves says what failed, and how it was started
    error = (tmp_path / "error.txt").read_text()
    assert error.startswith(lines[0] + "\n") and "command: python -m bench model.weights=random" in error
    assert not (tmp_path / "summary.json").exists()


def test_missing_pretrained_model_is_one_line(tmp_path, offline_env):
    out = run_bench(["model.id=/nonexistent/large-v3.pt", "run.limit=1", f"hydra.run.dir={tmp_path}"], offline_env)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "model.weights=random" in out.stderr


@pytest.mark.slow
def test_multirun_in_one_process_writes_one_folder_per_job(tmp_path, offline_env):
    out = run_bench(["-m", *TINY, "run.limit=2", "run.batch_size=1,2", f"hydra.sweep.dir={tmp_path}"], offline_env)
    assert out.returncode == 0, out.stderr
    summaries = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*/summary.json"))]
    assert [s["batch_size"] for s in summaries] == [1, 2]
    # at the end, one table of every job and the run folders: what bench.report on the sweep folder gives
    whole = out.stdout.split("# The whole sweep: 2 runs")[1]
    assert f"- {tmp_path / '0_voxtral_patched_b1'}\n- {tmp_path / '1_voxtral_patched_b2'}" in whole
    assert report_main([str(tmp_path), "--out", str(tmp_path / "by_hand")]) == 0
    by_hand = (tmp_path / "by_hand" / "comparison.md").read_text()
    assert by_hand.split("\n", 2)[2] in whole  # the same table, recommendation and notes
    assert (tmp_path / "report" / "comparison.csv").read_text() == (tmp_path / "by_hand" / "comparison.csv").read_text()
    assert (tmp_path / "report" / "report.html").exists() and (tmp_path / "report" / "rtfx_vs_batch.png").exists()


@pytest.mark.slow
def test_a_failed_job_is_recorded_and_the_sweep_goes_on(tmp_path, offline_env):
    """Job 0 cannot run (a Voxtral engine given a Whisper model); jobs 1 and 2 still run, the
    closing table holds them and names job 0 as failed, and the sweep's exit status says so.
    Job 1 names openai_whisper by its former name: it runs as openai_whisper, with a line that says so."""
    out = run_bench(["-m", *TINY, "run.limit=2", "engine=voxtral_stock,whisper_large_v3,whisper_hf",
                     "model=whisper_tiny_en", f"hydra.sweep.dir={tmp_path}"], offline_env)  # fmt: skip
    assert out.returncode == 1, out.stderr[-2000:]
    error = (tmp_path / "0_voxtral_stock_b1" / "error.txt").read_text()
    assert "runs voxtral models, but model=whisper_tiny_en" in error
    assert [p.parent.name for p in sorted(tmp_path.glob("*/summary.json"))] == ["1_openai_whisper_b1",
                                                                                "2_whisper_hf_b1"]  # fmt: skip
    whole = out.stdout.split("# The whole sweep: 2 runs")[1]
    assert f"Jobs that failed (their error.txt):\n- {tmp_path / '0_voxtral_stock_b1'}: bench: error:" in whole
    assert "bench: 1 job(s) of the sweep failed" in out.stdout
    assert "bench: engine whisper_large_v3 is the former name of openai_whisper; running that" in out.stderr
    assert json.loads((tmp_path / "1_openai_whisper_b1" / "summary.json").read_text())["engine"] == "openai_whisper"


@pytest.mark.slow
def test_submitit_local_sweep_runs_two_jobs(tmp_path, offline_env):
    out = run_bench(
        [
            "-m",
            "hydra/launcher=local",
            *TINY,
            "run.limit=2",
            "run.batch_size=1,2",
            f"hydra.sweep.dir={tmp_path}",
        ],
        offline_env,
    )
    assert out.returncode == 0, out.stderr
    summaries = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*/summary.json"))]
    assert [s["batch_size"] for s in summaries] == [1, 2]
    assert (tmp_path / ".submitit").is_dir()  # the jobs really went through submitit


@pytest.mark.slow
def test_sweep_over_the_three_engines_writes_every_spec_field(tmp_path, offline_env):
    engines = ["voxtral_stock", "voxtral_compile", "openai_whisper"]
    out = run_bench(
        [
            "-m",
            f"engine={','.join(engines)}",
            *TINY,
            "run.limit=3",
            "run.batch_size=2",
            f"hydra.sweep.dir={tmp_path}",
        ],
        offline_env,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    summaries = {s["engine"]: s for s in (json.loads(p.read_text()) for p in tmp_path.glob("*/summary.json"))}
    assert sorted(summaries) == sorted(engines)
    for name, summary in summaries.items():
        assert set(summary) >= SUMMARY_FIELDS, name
        assert set(summary["environment"]) >= ENVIRONMENT_FIELDS, name
        assert summary["n_utterances"] == 3 and summary["n_failed"] == 0 and summary["rtfx"] > 0
        rows = pd.read_parquet(next(tmp_path.glob(f"*_{name}_*/utterances.parquet")))
        assert set(rows.columns) >= UTTERANCE_COLUMNS
        assert (rows.n_tokens == rows.target_tokens).all(), name  # length-matched decoding
    assert summaries["voxtral_stock"]["model"] == "voxtral_mini_3b"
    assert summaries["voxtral_compile"]["engine_report"]["recompiles"] == 0


def test_an_unknown_engine_is_one_error_line_with_the_closest_name_and_the_engines(offline_env):
    out = run_bench(["-m", "engine=voxtral_stock,whisper_patchd"], offline_env)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip() == (
        "bench: error: unknown engine 'whisper_patchd'; did you mean whisper_patched? choose from: faster_whisper, "
        "openai_whisper, voxtral_compile, voxtral_patched, voxtral_stock, whisper_compile, whisper_hf, "
        "whisper_patched"
    )


def test_an_unknown_model_or_dataset_gets_the_closest_name():
    from bench.__main__ import check_group_choices

    for arg, hint in (("model=whisper_tiny", "did you mean whisper_tiny_en?"),
                      ("dataset=librispeech_clean", "did you mean librispeech_test_clean?")):  # fmt: skip
        with pytest.raises(SystemExit) as stop, contextlib.redirect_stderr(io.StringIO()) as err:
            check_group_choices([arg])
        assert stop.value.code == 2 and hint in err.getvalue()
    with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()) as err:
        check_group_choices(["model=zzzz"])
    assert "did you mean" not in err.getvalue() and "choose from: voxtral_mini_3b" in err.getvalue()


def test_an_unreachable_hub_is_one_error_line_saying_what_to_do(offline_env, tmp_path):
    env = {k: v for k, v in offline_env.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"  # nothing listens there: the Hub cannot be reached
    out = run_bench(["dataset=librispeech_test_clean", *TINY, f"hydra.run.dir={tmp_path}"], env)
    assert out.returncode == 2
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("bench: error: dataset 'openslr/librispeech_asr' (config clean, split test) could not")
    assert last.endswith("run the shipped dataset (dataset=sample) or the generated one (dataset=synthetic), or "
                         "point dataset.path at a local copy")  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["run.batchsize=4"], "bench: error: unknown setting run.batchsize; did you mean run.batch_size?"),
        (["engine=voxtral_patched", "engine.patchs=[]"], "unknown setting engine.patchs; did you mean engine.patches?"),
        (["+run.batchsize=4"], "bench has no setting run.batchsize; did you mean run.batch_size?"),
        (["+run.batch_size=4"], "run.batch_size is a setting already: drop the +"),
        (
            ["-m", "run.batch_size=1,2", "dataset.nclips=3"],
            "unknown setting dataset.nclips; did you mean dataset.n_clips?",
        ),
    ],
)
def test_a_misspelt_or_added_setting_is_one_line_with_the_closest_name(argv, line, capsys):
    from bench.__main__ import check_setting_names

    with pytest.raises(SystemExit) as exit_:
        check_setting_names(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert line in err and len(err.splitlines()) == 1


def test_settings_of_the_chosen_engine_hydra_s_own_and_the_checkpoint_s_pass():
    from bench.__main__ import check_setting_names

    check_setting_names(["engine=voxtral_patched", "engine.max_chunks=2", "hydra.run.dir=x", "run.limit=2",
                         "+model.tiny.text_config.rope_theta=10000", "hydra/launcher=local", "~run.limit"])  # fmt: skip


def test_the_command_line_refuses_a_misspelt_setting(offline_env):
    out = subprocess.run(
        bench_command("run.batchsize=4"), capture_output=True, text=True, env=offline_env, cwd=REPO_DIR
    )
    assert out.returncode == 2 and out.stderr.strip().endswith("did you mean run.batch_size?")


def test_other_libraries_speak_at_warning_level_unless_run_verbose(monkeypatch):
    import logging

    import datasets

    from bench.host.libraries import quiet_libraries

    logger = logging.getLogger("mistral_common")
    monkeypatch.setattr(logger, "level", logging.NOTSET)  # restored after the test
    datasets.enable_progress_bars()  # as a fresh process has them (an in-process run may have quieted them)
    quiet_libraries(verbose=True)
    assert logger.level == logging.NOTSET and datasets.is_progress_bar_enabled()  # untouched
    try:
        quiet_libraries(verbose=False)
        assert logger.level == logging.WARNING and not datasets.is_progress_bar_enabled()
    finally:
        datasets.enable_progress_bars()
        logger.manager._clear_cache()  # isEnabledFor caches levels


@pytest.mark.parametrize(
    "module",
    ["bench.online.load", "bench.analysis.gate", "bench.analysis.gate_power", "bench.analysis.report",
     "bench.lab.agreement", "bench.lab.busy_host", "bench.lab.ladder", "bench.lab.reference", "bench.lab.speed",
     "bench.lab.wheelhouse"],
)  # fmt: skip
def test_a_commands_help_says_its_first_paragraph_whole(module, capsys):
    """--help opens with the module's first paragraph, not its first line cut mid-sentence."""
    import importlib

    command = importlib.import_module(module)
    with pytest.raises(SystemExit):
        command.main(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert " ".join(command.__doc__.split("\n\n")[0].split()) in shown
