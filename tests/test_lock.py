"""constraints.txt, the lock: every install bench makes is held to it, and the environment the
tests run in is the one it describes (nox -s latest deselects the first test: it tries newer
versions on purpose)."""

import re
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from bench.config import REPO_DIR

LOCK = REPO_DIR / "constraints.txt"


def locked() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def installed_tree(root: str, extras: set[str]) -> dict[str, str]:
    """{name: installed version} of root's requirements, recursively, for the extras asked for
    that are installed here (a user's install has fewer extras than the shared environment)."""
    found, todo = {}, [(Requirement(r), extra) for r in distribution(root).requires or [] for extra in ["", *extras]]
    while todo:
        requirement, extra = todo.pop()
        if requirement.marker and not requirement.marker.evaluate(default_environment() | {"extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        if name in found:
            continue
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            assert extra, f"{name}, a requirement of bench itself, is not installed"
            continue  # an extra this environment was not installed with
        found[name] = dist.version
        todo += [(Requirement(r), e) for r in dist.requires or [] for e in ["", *requirement.extras]]
    return found


def test_the_installed_versions_are_the_locked_ones():
    pins = locked()
    tree = installed_tree("bench", {"dev", "real", "voice", "docs", "browser"})
    assert len(tree) > 100  # the walk reached past bench's direct requirements
    unlocked = sorted(set(tree) - set(pins))
    assert not unlocked, f"installed but not in {LOCK.name} (nox -s lock writes it): {unlocked}"
    # a local label (torch's +cpu build) is the same release as the lock's
    differ = {n: (v, pins[n]) for n, v in tree.items() if Version(v).public != Version(pins[n]).public}
    assert not differ, f"installed (first) against locked (second): {differ}"


def test_a_locked_version_is_exact_and_has_no_local_label():
    # ==X.Y.Z only: a GPU host finds torch==2.13.0 on PyPI (a CUDA build), never 2.13.0+cpu
    pins = locked()
    assert all(Version(v).local is None and str(Version(v)) == v for v in pins.values()), pins
    assert {"torch", "transformers", "openai-whisper", "ruff", "pytest", "nox", "setuptools"} <= set(pins)


def test_every_install_is_held_to_the_lock():
    readme = (REPO_DIR / "README.md").read_text()
    install = readme.split("## Install")[1].split("\n## ")[0]
    (quick_start,) = re.findall(r"```bash\n(.*?)```", install, flags=re.S)
    assert "export PIP_CONSTRAINT=$PWD/constraints.txt" in quick_start.splitlines()[0]  # before any install
    test_command = readme.split("## Tests")[1].split("```bash\n")[1].split("```")[0].strip()
    assert test_command.startswith("python3 -m pip install -c constraints.txt nox && ")
    # CI runs the README's test command as written, then the slow tests
    ci = (REPO_DIR / ".ci" / "run").read_text()
    assert test_command in ci and "nox -s tests_slow" in ci


def test_the_noxfile_installs_under_the_lock_and_leaves_out_only_torch_for_a_torch_of_ones_own(tmp_path, monkeypatch):
    import shutil

    monkeypatch.syspath_prepend(str(REPO_DIR))
    noxfile = __import__("noxfile")
    shutil.copy(LOCK, tmp_path / LOCK.name)
    monkeypatch.chdir(tmp_path)  # the noxfile's paths are the checkout's, relative
    monkeypatch.delenv("BENCH_TORCH", raising=False)
    assert noxfile._locked(None)["PIP_CONSTRAINT"] == str(tmp_path / LOCK.name)
    monkeypatch.setenv("BENCH_TORCH", "torch==2.11.0")
    without = Path(noxfile._locked(None)["PIP_CONSTRAINT"])
    assert without.parent == tmp_path / ".nox"
    locked_lines = LOCK.read_text().splitlines()
    assert without.read_text().splitlines() == [line for line in locked_lines if not line.startswith("torch==")]
    assert len(locked_lines) - len(without.read_text().splitlines()) == 1
