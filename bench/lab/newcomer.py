"""python -m bench.lab.newcomer: the README followed word for word on a fresh clone, each step timed
and its disk measured, so the README's "how long, how much disk" figures are measured here.

Clones this checkout's HEAD into a temporary folder and runs there, in a shell with no virtual
environment active, the README's blocks as written: the install and quick start, the test
command, recipe 1 (in the installed environment; its sweep folder is the one it made), then
the slow tests CI adds. Writes a Markdown table (step, minutes, disk the clone grew by) and
recipe 1's recommendation.

    python -m bench.lab.newcomer --out results/newcomer/cpu.md
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.config import REPO_DIR


def readme_blocks(readme: str) -> dict[str, str]:
    """The README's blocks a newcomer runs: install, test command, recipe 1."""

    def section(title: str) -> str:
        return readme.split(f"\n## {title}")[1].split("\n## ")[0]

    def blocks(text: str) -> list[str]:
        return re.findall(r"```bash\n(.*?)```", text, flags=re.S)

    return {
        "install and quick start": blocks(section("Install"))[0].strip(),
        "test command": blocks(section("Tests"))[0].strip(),
        "recipe 1": blocks(section("Recipes"))[0].strip(),
    }


def newcomer_env(tmp: Path) -> dict[str, str]:
    """This environment as a new machine's shell has it: no virtual environment on PATH or
    active, no pip cache (a new machine downloads, and builds the source-only packages, again)
    and an empty compile cache (Inductor keeps one per user in /tmp, which this machine's
    earlier runs have filled: with it the tests would compile less than on a new machine)."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PIP_CONSTRAINT")}
    keep = [p for p in env.get("PATH", "").split(os.pathsep) if "/.nox/" not in p and "/.venv/" not in p]
    return env | {
        "PATH": os.pathsep.join(keep),
        "TORCHINDUCTOR_CACHE_DIR": str(tmp / "inductor"),
        "PIP_NO_CACHE_DIR": "1",
    }


def disk_bytes(folder: Path) -> int:
    return int(subprocess.run(["du", "-sb", str(folder)], capture_output=True, text=True).stdout.split()[0])


def run_step(command: str, clone: Path, env: dict) -> tuple[float, str]:
    """Minutes the command took, and what it printed; stops with its output if it fails."""
    start = time.perf_counter()
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=clone, env=env, capture_output=True,
                          text=True)  # fmt: skip
    minutes = (time.perf_counter() - start) / 60
    if done.returncode != 0:
        raise SystemExit(f"bench.lab.newcomer: `{command[:200]}` failed ({done.returncode}):\n"
                         f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")  # fmt: skip
    return minutes, done.stdout


def recipe_1(block: str) -> tuple[str, str]:
    """The sweep line as written, and the report line with the folder the sweep made."""
    sweep, report = [line for line in block.splitlines() if line.strip()]
    newest = "$(ls -d runs/multirun/*/* | sort | tail -1)"
    return sweep, ". .venv/bin/activate && " + report.replace("runs/multirun/DATE/TIME", newest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lab.newcomer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="also write the table here (Markdown)")
    parser.add_argument("--skip-slow", action="store_true", help="leave out the slow tests CI adds")
    args = parser.parse_args(argv)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_DIR, capture_output=True,
                            text=True).stdout.strip()  # fmt: skip
    rows, said = [], ""
    # report_browser installs Debian's chromium where it is missing: a figure with or without that
    chromium = "was" if shutil.which("chromium") else "was not"
    with tempfile.TemporaryDirectory() as tmp:
        env, clone = newcomer_env(Path(tmp)), Path(tmp) / "bench"
        subprocess.run(["git", "clone", "-q", str(REPO_DIR), str(clone)], check=True)
        steps = readme_blocks((clone / "README.md").read_text())
        sweep, report = recipe_1(steps.pop("recipe 1"))
        plan = [*steps.items(), ("recipe 1: the sweep", ". .venv/bin/activate && " + sweep),
                ("recipe 1: the report", report)]  # fmt: skip
        if not args.skip_slow:
            plan.append(("the slow tests CI adds", "python3 -m nox -s tests_slow"))
        for name, command in plan:
            before = disk_bytes(clone)
            minutes, out = run_step(command, clone, env)
            rows.append(f"| {name} | {minutes:.1f} | {(disk_bytes(clone) - before) / 2**30:.2f} |")
            print(rows[-1], flush=True)
            if name == "recipe 1: the report":
                said = out[out.index("Recommended:") if "Recommended:" in out else out.index("No configuration") :]
                said = said.split("\n\n")[0].strip()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    text = (
        f"# The README, followed by a newcomer\n\n"
        f"{os.cpu_count()} cores ({cpu}), {datetime.now(UTC):%Y-%m-%d}, a fresh clone of {commit}, nothing else "
        f"running: `python -m bench.lab.newcomer`. Each step is the README's block as written, in a shell with no "
        f"virtual environment and an empty compile cache; disk is what the clone grew by (pip's and apt's caches "
        f"aside). Chromium {chromium} on the machine before the test command.\n\n"
        "| step | minutes | disk added, GiB |\n|---|---|---|\n" + "\n".join(rows) + "\n\n"
        f"Recipe 1's recommendation, as printed:\n\n```\n{said}\n```\n"
    )
    print("\n" + text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
