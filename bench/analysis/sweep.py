"""The end of a `python -m bench -m ...` sweep: one table of every job, as bench.report on
the sweep folder gives it, printed and written under <sweep dir>/report/.

A Hydra callback (conf/config.yaml, hydra.callbacks): Hydra calls it in the process that
launched the sweep, after the last job, whichever launcher ran the jobs (in this process,
or submitit's on this machine or on SLURM).
"""

from __future__ import annotations

from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from bench.errors import BenchError


def failed_jobs_in(sweep_dir: Path) -> list[Path]:
    """The error.txt of each job of the sweep that failed."""
    return sorted(sweep_dir.glob("*/error.txt"))


def sweep_report(sweep_dir: Path) -> str:
    """The report of every finished job under sweep_dir, its files written to sweep_dir/report."""
    from bench.analysis.comparison import check_comparable
    from bench.analysis.recommendation import Constraints
    from bench.analysis.report import compare, write_comparison
    from bench.analysis.runs import load_runs

    failed = "".join(f"- {path.parent}: {path.read_text().splitlines()[0]}\n" for path in failed_jobs_in(sweep_dir))
    failed = f"\nJobs that failed (their error.txt):\n{failed}" if failed else ""
    try:
        runs = load_runs([str(sweep_dir)])
    except BenchError:
        return f"No job of the sweep in {sweep_dir} finished: no summary.json to compare.\n{failed}"
    lines = []
    try:
        check_comparable(runs, allow_mixed=False)
    except BenchError as err:
        lines.append(f"Note: {err}. The table below holds them all anyway.\n")
    out = sweep_dir / "report"
    out.mkdir(exist_ok=True)
    comparison = compare(runs, out, Constraints())
    write_comparison(comparison, out, as_html=True)
    folders = "\n".join(f"- {run.path}" for run in sorted(runs, key=lambda r: str(r.path)))
    return (
        f"\n# The whole sweep: {len(runs)} runs\n\n" + "".join(lines) + comparison.markdown().split("\n", 2)[2]
        + f"\nRun folders:\n{folders}\n{failed}\nThis report (Markdown, CSV, HTML and figures): {out}\n"
        f"Constraints, price or other runs: python -m bench.report {sweep_dir} --out DIR (add --html for the "
        "one-page HTML report)\n"
    )  # fmt: skip


failed_jobs = 0  # after a sweep: how many of its jobs failed (python -m bench exits 1 if any)


class SweepTable(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        global failed_jobs
        sweep_dir = Path(config.hydra.sweep.dir)
        print(sweep_report(sweep_dir))
        failed_jobs = len(failed_jobs_in(sweep_dir))
        if failed_jobs:
            print(f"bench: {failed_jobs} job(s) of the sweep failed: see their error.txt (listed above)")
