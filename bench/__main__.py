"""python -m bench engine=... dataset=... : measure one engine, write its run folder."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from bench.config import register_configs
from bench.errors import BenchError

register_configs()

CONFIG_GROUPS = ("engine", "model", "dataset")


def check_group_choices(argv: list[str]) -> None:
    """One clear line for an unknown engine=/model=/dataset= name (Hydra's own message is
    a page long), before Hydra composes anything. Sweeps (a,b) are checked name by name."""
    from bench.config import REPO_DIR

    for arg in argv:
        group, _, value = arg.partition("=")
        if group not in CONFIG_GROUPS or not value or "(" in value:
            continue
        known = sorted(p.stem for p in (REPO_DIR / "conf" / group).glob("*.yaml"))
        for name in value.split(","):
            if name not in known:
                print(f"bench: error: unknown {group} {name!r}; choose from: {', '.join(known)}", file=sys.stderr)
                sys.exit(2)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from bench.runner import run
    from bench.table import format_summaries

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        summary = run(cfg, run_dir)
    except BenchError as err:
        print(f"bench: error: {err}", file=sys.stderr)
        sys.exit(2)
    print(format_summaries([summary]))
    print(f"run folder: {run_dir}")
    return summary["rtf"]


if __name__ == "__main__":
    check_group_choices(sys.argv[1:])
    main()
