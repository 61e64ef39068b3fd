"""Tests run offline: nothing may reach the Hugging Face Hub."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if "PYTEST_XDIST_WORKER" in os.environ:
    # one thread per worker (and per subprocess it starts): two workers on two cores, not four threads
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

from bench.config import REPO_DIR, register_configs  # noqa: E402

CONF_DIR = REPO_DIR / "conf"


def compose_config(*overrides: str, hydra_node: bool = False):
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra_node)


def tiny_engine(name: str, *overrides: str, dtype=None):
    """A loaded engine at tiny scale with random weights on the CPU (float32 unless dtype says)."""
    import torch

    from bench.engines import engine_class

    cfg = compose_config(f"engine={name}", "model.weights=random", "model.scale=tiny", *overrides)
    engine = engine_class(name)(cfg.engine, cfg.model, torch.device("cpu"), dtype or torch.float32, "en")
    engine.load()
    return engine


@pytest.fixture
def tiny_overrides():
    return ["model.weights=random", "model.scale=tiny", "run.progress=false"]


def bench_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench", *args]


@pytest.fixture
def offline_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_DIR) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture(scope="session", autouse=True)
def leave_the_users_runs_folder_alone():
    """No test may write run folders into the checkout's runs/ (a user's own results)."""
    runs = REPO_DIR / "runs"
    before = set(runs.rglob("*")) if runs.exists() else set()
    yield
    after = set(runs.rglob("*")) if runs.exists() else set()
    assert not after - before, f"tests wrote into {runs}: {sorted(map(str, after - before))[:5]}"


@pytest.fixture
def run_dir(tmp_path) -> Path:
    return tmp_path / "run"
