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


def check_group_choices(argv: list[str]) -> list[str]:
    """One clear line for an unknown engine=/model=/dataset= name (Hydra's own message is
    a page long), before Hydra composes anything. Sweeps (a,b) are checked name by name.
    Returns argv with each former engine name replaced by its current one (said in a line)."""
    import difflib

    from bench.config import CONF_DIR
    from bench.engines import accept_former_name

    out = []
    for arg in argv:
        group, _, value = arg.partition("=")
        if group not in CONFIG_GROUPS or not value or "(" in value:
            out.append(arg)
            continue
        names = [accept_former_name(n) if group == "engine" else n for n in value.split(",")]
        known = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml") if not p.stem.endswith("_schema"))
        for name in names:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]}? " if close else ""
                print(f"bench: error: unknown {group} {name!r}; {hint}choose from: {', '.join(known)}", file=sys.stderr)
                sys.exit(2)
        out.append(f"{group}={','.join(names)}")
    return out


BENCH_SETTINGS = ("run", "model", "dataset", "engine", "device", "dtype", "profile")
# the checkpoint's own config, free-form: a + may add a field of it that the YAML does not list
FREE_FORM = ("model.architecture.", "model.tiny.")


def _setting_names(cfg, prefix: str = "") -> list[str]:
    names = []
    for key, value in cfg.items():
        names.append(prefix + str(key))
        if isinstance(value, dict):
            names += _setting_names(value, f"{prefix}{key}.")
    return names


def check_setting_names(argv: list[str]) -> None:
    """One clear line for a misspelt setting of bench's own (run.batchsize=4), with the closest
    name, instead of Hydra's hint to add it with a + (which runs with the typo ignored and
    stored); + additions to bench's settings are refused for the same reason."""
    import difflib

    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    from bench.lab.grid import compose

    candidates = [a for a in argv if "=" in a and not a.startswith("-") or a.startswith("~")]
    try:
        overrides = OverridesParser.create().parse_overrides(candidates)
    except Exception:  # noqa: BLE001 - a malformed override: Hydra's own message says where
        return
    choices = {
        o.key_or_group: o.input_line.split("=", 1)[1].split(",") for o in overrides if o.key_or_group in CONFIG_GROUPS
    }
    known: set[str] = set()
    for engine in choices.get("engine", [None]):
        picks = [f"{g}={v[0]}" for g, v in choices.items() if g != "engine"] + ([f"engine={engine}"] if engine else [])
        known |= set(_setting_names(OmegaConf.to_container(compose(picks), resolve=False)))
    for override in overrides:
        key = override.key_or_group
        if key.split(".")[0] == "hydra" or "/" in key or key in CONFIG_GROUPS or key.startswith(FREE_FORM):
            continue  # Hydra's own settings and config groups, and the checkpoint's free-form config
        close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        if override.type.name in ("ADD", "FORCE_ADD"):
            why = f"{key} is a setting already: drop the +" if key in known else f"bench has no setting {key}{hint}"
            print(
                f"bench: error: {override.input_line}: bench's settings are changed without a +; {why}", file=sys.stderr
            )
            sys.exit(2)
        if key not in known:
            print(f"bench: error: unknown setting {key}{hint}", file=sys.stderr)
            sys.exit(2)
    _check_values([o for o in overrides if not o.is_sweep_override() and not o.key_or_group.startswith("hydra")])


def _check_values(overrides) -> None:
    """One line for a value a setting does not take (model.weights=randm), as Hydra would refuse it."""
    from bench.lab.grid import compose

    try:
        compose([o.input_line for o in overrides])
    except Exception as err:  # noqa: BLE001 - Hydra's composition error, and what caused it
        cause = err
        while cause.__cause__ is not None:
            cause = cause.__cause__
        line = next((o.input_line for o in overrides if o.input_line in str(err)), None)
        if line is None or type(cause).__name__ != "ValidationError":
            return  # not a value's fault: Hydra says what it is
        print(f"bench: error: {line}: {str(cause).splitlines()[0]}", file=sys.stderr)
        sys.exit(2)


ERROR_FILE = "error.txt"


def _write_error(run_dir: Path, text: str) -> None:
    """What stopped the run, beside whatever it left (Hydra's log, a partial measurement), so a
    folder without summary.json says why; the command that was run comes with it."""
    if run_dir.is_dir():
        command = " ".join(["python -m bench", *sys.argv[1:]])
        (run_dir / ERROR_FILE).write_text(f"{text.rstrip()}\n\ncommand: {command}\n")


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from hydra.types import RunMode

    from bench.analysis.table import format_summaries
    from bench.pipeline.runner import run

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    # a job of a sweep that fails is recorded and the sweep goes on: the closing table lists it
    # (bench.analysis.sweep) and the sweep's exit status says some failed
    in_sweep = HydraConfig.get().mode == RunMode.MULTIRUN
    (run_dir / ERROR_FILE).unlink(missing_ok=True)  # from an earlier session of this folder (run.resume)
    try:
        summary = run(cfg, run_dir)
    except BenchError as err:
        print(f"bench: error: {err}", file=sys.stderr)
        _write_error(run_dir, f"bench: error: {err}\n")
        if in_sweep:
            return None
        sys.exit(2)
    except BaseException as err:
        import traceback

        interrupted = isinstance(err, KeyboardInterrupt)
        _write_error(run_dir, f"bench: the run {'interrupted (Ctrl-C)' if interrupted else 'failed'}\n\n"
                     + traceback.format_exc())  # fmt: skip
        if in_sweep and isinstance(err, Exception):
            traceback.print_exc()
            return None
        raise
    print(format_summaries([summary]))
    print(f"run folder: {run_dir}")
    return summary.rtf


if __name__ == "__main__":
    from bench.analysis import sweep

    sys.argv[1:] = check_group_choices(sys.argv[1:])  # Hydra reads sys.argv: with current engine names
    check_setting_names(sys.argv[1:])
    main()
    if sweep.failed_jobs:  # set by the sweep's closing table: some job of the sweep failed
        sys.exit(1)
