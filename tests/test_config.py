"""Every YAML in conf/ composes, and the typed schema rejects typos."""

import pytest
from conftest import CONF_DIR, compose_config
from hydra.errors import ConfigCompositionException

GROUPS = ["engine", "model", "dataset"]


@pytest.mark.parametrize("group,name", [(g, p.stem) for g in GROUPS for p in sorted((CONF_DIR / g).glob("*.yaml"))])
def test_every_yaml_composes(group, name):
    cfg = compose_config(f"{group}={name}")
    assert cfg[group].name == name


@pytest.mark.parametrize("launcher", [p.stem for p in sorted((CONF_DIR / "hydra" / "launcher").glob("*.yaml"))])
def test_launcher_configs_compose(launcher):
    cfg = compose_config(f"hydra/launcher={launcher}", hydra_node=True)
    assert "submitit" in cfg.hydra.launcher._target_


def test_each_engine_brings_its_own_model_and_the_command_line_wins():
    assert compose_config("engine=openai_whisper").model.family == "whisper"
    cfg = compose_config("engine=openai_whisper", "model.weights=random", "model.scale=tiny", "model.seed=3")
    assert (cfg.model.weights, cfg.model.scale, cfg.model.seed) == ("random", "tiny", 3)


def test_defaults():
    cfg = compose_config()
    assert (cfg.engine.name, cfg.model.name, cfg.dataset.name) == (
        "voxtral_patched",
        "voxtral_mini_3b",
        "sample",
    )
    assert (cfg.run.batch_size, cfg.run.warmup_batches, cfg.run.repeats) == (1, 1, 1)
    assert cfg.device == "auto" and cfg.dtype == "auto"


def test_typo_in_an_override_fails():
    with pytest.raises(ConfigCompositionException):
        compose_config("run.batchsize=8")
    with pytest.raises(ConfigCompositionException):
        compose_config("run.batch_size=eight")
