"""A tree copied without .git (the wheelhouse route) records the commit it was copied from."""

import json
import subprocess

import pytest

from bench.config import REPO_DIR
from bench.host import environment


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO_DIR, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def copied_tree(monkeypatch, tmp_path):
    """This checkout, read as a copy without .git: the stamp written first, then git gone."""
    stamp = tmp_path / "source.json"
    record = environment.write_source_stamp(stamp)
    monkeypatch.setattr(environment, "_run", lambda *cmd: None)  # no git on the host
    monkeypatch.setenv("BENCH_SOURCE_STAMP", str(stamp))
    return stamp, record


def test_a_copied_tree_names_the_commit_it_was_copied_from(copied_tree):
    stamp, record = copied_tree
    assert record["git_commit"] == _git("rev-parse", "HEAD")
    assert "bench/stats.py" in record["files"]
    commit, dirty = environment.bench_commit()
    assert commit == _git("rev-parse", "HEAD")
    assert dirty is record["git_dirty"]
    assert environment.environment(__import__("torch").device("cpu"))["git_commit"] == commit


def test_a_copy_edited_after_the_stamp_is_dirty(copied_tree):
    stamp, record = copied_tree
    record = json.loads(stamp.read_text())
    record["git_dirty"] = False
    record["files"]["bench/stats.py"] = "0" * 64  # as if bench/stats.py had changed since
    stamp.write_text(json.dumps(record))
    assert environment.bench_commit() == (record["git_commit"], True)


def test_no_git_and_no_stamp_names_no_commit(monkeypatch, tmp_path):
    monkeypatch.setattr(environment, "_run", lambda *cmd: None)
    monkeypatch.setenv("BENCH_SOURCE_STAMP", str(tmp_path / "absent.json"))
    assert environment.bench_commit() == (None, None)


def test_a_run_records_the_lease_it_ran_on():
    """The boot id names the machine as booted: the same within one boot, recorded in full."""
    import torch

    recorded = environment.environment(torch.device("cpu"))["lease"]
    from pathlib import Path

    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert recorded == {"boot_id": boot_id, "gpu_uuid": None}
    assert environment.lease_label({"lease": recorded}) == boot_id[:8]
    gpu = {"boot_id": "0123456789", "gpu_uuid": "GPU-abcdef12-3456"}
    assert environment.lease_label({"lease": gpu}) == "01234567/abcdef12"
    assert environment.lease_label({}) is None  # a run from before leases were recorded
