"""bench installed from a wheel (as `pip install .`, `pip install git+...` or an index install
it), not in editable mode: the quick start runs from a folder outside the checkout, with the
configs and the sample dataset the wheel holds."""

import json
import os
import subprocess
import sys

import pytest

from bench.config import REPO_DIR


@pytest.mark.slow
def test_the_quick_start_runs_from_a_built_wheel_outside_the_checkout(tmp_path):
    wheels, site, outside = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    outside.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    built = subprocess.run([*pip, "wheel", "--no-deps", str(REPO_DIR), "-w", str(wheels)], capture_output=True,
                           text=True, timeout=600)  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = wheels.glob("bench-*.whl")
    installed = subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], capture_output=True,
                               text=True, timeout=600)  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-2000:]
    # the wheel's bench, not the checkout's: first on the path, and run from outside the checkout
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    where = subprocess.run([sys.executable, "-c", "import bench; print(bench.__file__)"], capture_output=True,
                           text=True, env=env, cwd=outside)  # fmt: skip
    assert where.stdout.strip() == str(site / "bench" / "__init__.py")
    quick_start = [sys.executable, "-m", "bench", "model.weights=random", "model.scale=tiny", "engine=openai_whisper",
                   "run.limit=2", "run.progress=false"]  # fmt: skip
    out = subprocess.run(quick_start, capture_output=True, text=True, env=env, cwd=outside, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    (summary,) = (outside / "runs").glob("*/*/summary.json")
    assert json.loads(summary.read_text())["n_utterances"] == 2  # the sample dataset, from the wheel
    assert "whisper_patched" in subprocess.run([sys.executable, "-m", "bench.serve", "--help"], capture_output=True,
                                               text=True, env=env, cwd=outside).stdout  # fmt: skip
