"""Which lease measured each run of a results folder, and where a run of an earlier lease is
kept when a later one measures its point again.

A lease is one boot of one machine (bench.host.environment.lease: Linux's boot id and the
GPU's UUID). Runs of two leases of the same GPU model can differ by more than any interval of
one lease (the H200 folder: voxtral_stock at batch 1 ran at RTFx 14.5 on 2026-11-30 and 9.86
on 2026-12-04), so a folder filled over several leases says which run came from which
(bench.lab.sentinel compares them).

- A run's lease: the one it recorded (bench 0.3.0 on); for an older run, the one the folder's
  provenance.json names (stated from the lease's commands and logs; a run's own files are
  never edited), with the commit bench ran at where the run recorded none; else "unrecorded".
- earlier-leases/<lease>/runs/<dataset>/<label>_b<batch>/: a finished run kept when a later
  lease measured its point again. runs/ holds each point's newest run, and the tables read
  runs/ only.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

PROVENANCE_FILE = "provenance.json"
EARLIER = "earlier-leases"
UNRECORDED = "unrecorded"


def provenance(out: Path) -> dict:
    """The folder's provenance.json: {"leases": {name: {"runs": [folders relative to out], ...}}}."""
    path = out / PROVENANCE_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def run_lease(out: Path, folder: Path, environment: dict) -> str:
    """The lease a run was measured on: recorded, else stated by the folder's provenance."""
    from bench.host.environment import lease_label

    recorded = lease_label(environment)
    if recorded:
        return recorded
    where = folder.resolve().relative_to(out.resolve()).as_posix()
    for name, lease in provenance(out).get("leases", {}).items():
        if where in lease.get("runs", []):
            return name
    return UNRECORDED


def stated_environment(out: Path, folder: Path, environment: dict) -> dict:
    """The run's environment, with the commit and dirty flag the folder's provenance states for
    its lease where the run recorded no commit (a tree copied without .git, before bench.wheelhouse
    stamped its source), and "commit_stated": True then."""
    if environment.get("git_commit"):
        return environment
    lease = provenance(out).get("leases", {}).get(run_lease(out, folder, environment), {})
    if not lease.get("git_commit"):
        return environment
    stated = {"git_commit": lease["git_commit"], "git_dirty": lease.get("git_dirty"), "commit_stated": True}
    return environment | stated


def lease_of(out: Path):
    """run -> its lease (run_lease), for the runs of the folder out."""
    return lambda run: run_lease(out, run.path, run.summary.environment)


def this_lease(device) -> str:
    """The lease this process measures on."""
    from bench.host.environment import lease, lease_label

    return lease_label({"lease": lease(device)}) or UNRECORDED


def _folder_name(lease: str) -> str:
    return lease.replace("/", "-")


def recorded_environment(folder: Path) -> dict:
    """The environment a finished run's summary.json recorded."""
    return json.loads((folder / "summary.json").read_text()).get("environment") or {}


def keep_earlier(out: Path, folder: Path) -> Path:
    """Move a finished run from runs/ to earlier-leases/<its lease>/ (where a run of the same
    lease is already kept, that older one gives way); returns where it went."""
    lease = run_lease(out, folder, recorded_environment(folder))
    target = out / EARLIER / _folder_name(lease) / folder.relative_to(out)
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(folder, target)
    return target


def of_another_lease(out: Path, folder: Path, here: str) -> bool:
    """Whether the finished run in folder was measured on a known lease other than here (a run
    whose lease is unrecorded cannot say how far any two leases differ, so it is not kept)."""
    if not (folder / "summary.json").exists():
        return False
    return run_lease(out, folder, recorded_environment(folder)) not in (here, UNRECORDED)
