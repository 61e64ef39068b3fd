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
    main()
