"""The README's three recipes, read from the README and run at tiny scale, so the landing page
cannot drift from what works. Each command runs as written through bash, with only what a
test must change substituted: fewer clips and passes, folders under tmp_path, a free port on
127.0.0.1, a clip to send, and no git checkouts (the test runs one commit)."""

import os
import re
import subprocess
import sys

import pytest

from bench.config import REPO_DIR
from bench.online.serve_process import free_port, stop, wait_until_healthy


def recipes() -> list[str]:
    """The bash blocks of the README's "## Recipes" section, in order."""
    section = (REPO_DIR / "README.md").read_text().split("## Recipes")[1].split("\n## ")[0]
    return re.findall(r"```bash\n(.*?)```", section, flags=re.S)


def run_block(block: str, cwd, env) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)  # fmt: skip


@pytest.fixture
def env():
    """`python` is this interpreter (bash finds it first on PATH); bench from this checkout."""
    bin_dir = os.path.dirname(sys.executable)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(REPO_DIR),
            "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "ORT_DISABLE_TELEMETRY": "1"}  # fmt: skip


def test_the_readme_has_three_recipes():
    assert len(recipes()) == 3


@pytest.mark.slow
def test_recipe_1_compare_and_recommend(tmp_path, env):
    block = recipes()[0]
    sweep = tmp_path / "sweep"
    block = block.replace(
        "run.batch_size=1,8", f"run.batch_size=1,8 run.limit=2 run.progress=false hydra.sweep.dir={sweep}"
    )
    block = block.replace("runs/multirun/DATE/TIME", str(sweep)).replace(
        "--out runs/report", f"--out {tmp_path / 'report'}"
    )
    out = run_block(block, tmp_path, env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "# The whole sweep: 6 runs" in out.stdout
    assert (tmp_path / "report" / "comparison.md").exists()
    assert "No configuration meets every constraint" in out.stdout or "Recommended:" in out.stdout


@pytest.mark.slow
def test_recipe_2_the_ci_gate(tmp_path, env):
    block = recipes()[1]
    block = re.sub(r"git checkout \S+ && ", "", block)  # one commit here: the base and the candidate alike
    block = block.replace("dataset.n_clips=16", "dataset.n_clips=8").replace("run.repeats=3", "run.repeats=2")
    out = run_block(block, tmp_path, env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert (tmp_path / "ci" / "baseline.json").exists() and "PASS" in out.stdout


@pytest.mark.slow
def test_recipe_3_serve_and_load(tmp_path, env):
    serve, curl, load = [line for line in recipes()[2].splitlines() if line.strip()]
    port = free_port()
    serve = serve.replace("serve.host=0.0.0.0", "serve.host=127.0.0.1").replace("serve.port=8000", f"serve.port={port}")
    process = subprocess.Popen(["bash", "-c", f"exec {serve}"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)  # fmt: skip
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", process, timeout=900)  # a cold compile cache
        from bench.data import load_utterances
        from bench.lab.grid import compose
        from bench.online.load import wav_bytes

        (clip,) = load_utterances(compose(["dataset=sample"]).dataset, 1, progress=False)
        (tmp_path / "clip.wav").write_bytes(wav_bytes(clip.audio))
        host = f"127.0.0.1:{port}"
        answer = run_block(curl.replace("HOST:8000", host), tmp_path, env)
        assert answer.returncode == 0 and '"text":' in answer.stdout, answer.stdout + answer.stderr
        load = load.replace("HOST:8000", host).replace("dataset=sample", "dataset=sample run.limit=4")
        load = load.replace("--concurrency 1,4,16", "--concurrency 1,4")
        out = run_block(load, tmp_path, env)
        assert out.returncode == 0, out.stderr[-3000:]
        assert (tmp_path / "runs" / "load" / "mine" / "c4" / "summary.json").exists()
        assert "goodput (<= 2 s)" in out.stdout and "| 1 | 4 | 0 |" in out.stdout
    finally:
        assert stop(process) == 0


def test_the_newcomer_measurement_reads_the_readmes_blocks_as_written():
    """python -m bench.lab.newcomer times these blocks: the install, the test command CI runs, and
    recipe 1 with the sweep folder it made put in for DATE/TIME."""
    from bench.lab.newcomer import readme_blocks, recipe_1

    blocks = readme_blocks((REPO_DIR / "README.md").read_text())
    assert blocks["install and quick start"].startswith("python3 -m venv .venv && . .venv/bin/activate")
    assert blocks["test command"] in (REPO_DIR / ".ci" / "run").read_text()
    assert blocks["recipe 1"] == recipes()[0].strip()
    sweep, report = recipe_1(blocks["recipe 1"])
    assert sweep.startswith("HF_HUB_OFFLINE=1 python -m bench -m ") and "DATE/TIME" not in report
    assert report.startswith(". .venv/bin/activate && python -m bench.report $(ls -d runs/multirun/*/* | sort")
