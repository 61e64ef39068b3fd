"""python -m bench.busy_host: one run measured idle and under known synthetic loads, so the
busy-host rule (bench.host.busy) rests on a measurement of the machine it is applied on.

At each level, `cores` of busy work run in other processes (a whole core per process, and one
process busy that share of every 100 ms for a fraction) while the run runs as a user runs it
(`python -m bench ...`, a subprocess). The table gives, per level, the load asked for, what the
run recorded (other processes' cores, steal, load average), its RTFx with the 95% interval, and
the rule's verdict. Idle comes first and last, so the machine's own drift shows beside the loads.

    python -m bench.busy_host --out results/host_load/cpu.md
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from bench.host.busy import RULE

# the quick start, three passes: a run a newcomer makes first, and the gate's kind of engine
RUN = ["model.weights=random", "model.scale=tiny", "run.limit=16", "run.repeats=3", "run.progress=false"]
LEVELS = [0.0, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 0.0]
_SPIN = """
import sys, time
share = float(sys.argv[1])
while True:
    start = time.perf_counter()
    while time.perf_counter() - start < 0.1 * share:
        pass
    time.sleep(0.1 * (1 - share))
"""


@contextmanager
def synthetic_load(cores: float):
    """`cores` of busy work in other processes while the block runs (2.5: two whole cores and one
    process busy half of the time)."""
    shares = [1.0] * int(cores) + ([cores - int(cores)] if cores - int(cores) > 1e-9 else [])
    spinners = [subprocess.Popen([sys.executable, "-c", _SPIN, str(share)]) for share in shares]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def measure_level(cores: float, overrides: list[str], run_dir: Path) -> dict:
    """The run under that load: its summary.json."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    with synthetic_load(cores):
        done = subprocess.run([sys.executable, "-m", "bench", *overrides, f"hydra.run.dir={run_dir}"],
                              capture_output=True, text=True, env=env)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"bench.busy_host: the run under {cores:g} cores of load failed:\n{done.stderr[-2000:]}")
    return json.loads((run_dir / "summary.json").read_text())


def row(cores: float, summary: dict) -> str:
    load, ci = summary["host_load"], summary["rtfx_ci"]
    return (
        f"| {cores:g} | {load['other_processes_cores']:.2f} | {load['steal_share']:.1%} | "
        f"{load['load_average_max']:.2f} | {summary['rtfx']:.1f} | [{ci[0]:.1f}, {ci[1]:.1f}] | "
        f"{'busy' if load['busy'] else 'idle'} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.busy_host", description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", type=float, nargs="+", default=LEVELS, help="cores of synthetic load, in order")
    parser.add_argument("--out", type=Path, help="also write the table here (Markdown)")
    parser.add_argument("overrides", nargs="*", default=RUN, help=f"the run's overrides (default: {' '.join(RUN)})")
    args = parser.parse_args(argv)
    lines = ["| synthetic load, cores | other processes, cores | steal | load average (max) | RTFx | RTFx 95% CI | "
             "by the rule |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    hardware = None
    with tempfile.TemporaryDirectory() as tmp:
        for i, cores in enumerate(args.levels):
            summary = measure_level(cores, args.overrides, Path(tmp) / f"level-{i}")
            hardware = summary["environment"].get("hardware")
            lines.append(row(cores, summary))
            print(lines[-1], flush=True)
    text = (
        f"# The same run idle and under a known load\n\n"
        f"On {hardware}, {datetime.now(UTC):%Y-%m-%d}: `python -m bench {' '.join(args.overrides)}` at each level of "
        f"`python -m bench.busy_host --levels {' '.join(f'{c:g}' for c in args.levels)}`, in that order.\n\n"
        + "\n".join(lines)
        + f"\n\nThe rule: {RULE} (bench/host/busy.py, docs/measurement.md).\n"
    )
    print("\n" + text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0
