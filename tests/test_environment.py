"""Provenance: the commit and version a run records are bench's own."""

import subprocess

import pytest

from bench.config import REPO_DIR
from bench.host import environment as env_module


def _git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def bench_copy_inside_another_repo(tmp_path, monkeypatch):
    """bench's tree as if copied inside another project's checkout."""
    outer = tmp_path / "host-project"
    inner = outer / "vendor" / "bench"
    inner.mkdir(parents=True)
    _git(outer, "init", "-q")
    _git(outer, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "host")
    monkeypatch.setattr(env_module, "REPO_DIR", inner)
    return inner


def test_a_copy_inside_another_repository_records_no_commit(bench_copy_inside_another_repo, monkeypatch):
    import bench

    monkeypatch.setattr(env_module, "_version", lambda package: None)  # not pip-installed
    record = env_module.environment(env_module.torch.device("cpu"))
    assert record["git_commit"] is None and record["git_dirty"] is None
    assert record["bench"] == bench.__version__  # the tree's own


def test_bench_at_the_top_of_its_own_repository_records_its_head():
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_DIR, capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("bench's source tree is not a git checkout here (installed from a wheel or an archive)")
    record = env_module.environment(env_module.torch.device("cpu"))
    assert record["git_commit"] == head.stdout.strip()
    assert isinstance(record["git_dirty"], bool)
    assert record["bench"] is not None


def test_the_version_is_the_running_codes_not_an_editable_installs_stale_metadata(monkeypatch):
    """An editable install made at 0.1.0 keeps saying 0.1.0 in its metadata after the tree moved
    on: a run records the version of the code that ran."""
    import bench

    monkeypatch.setattr(env_module, "_version", lambda package: "0.1.0" if package == "bench" else None)
    monkeypatch.setattr(bench, "__version__", "9.9.9")
    assert env_module.environment(env_module.torch.device("cpu"))["bench"] == "9.9.9"
