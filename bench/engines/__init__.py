"""Engine registry: every module in this package (except base) is one engine.

A module named ``x`` provides ``Config`` (an ``EngineConfig`` subclass with name "x")
and ``ENGINE`` (its ``Engine`` subclass); conf/engine/x.yaml selects it. Engine modules
import their heavy libraries inside ``load`` so discovering them stays cheap.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from functools import cache

from bench.errors import BenchError

# Engines renamed: former name -> name. A former name is still accepted where a command takes
# an engine (with one line saying so), and run folders measured before the rename keep it: a
# reader maps it (current_name) and finds a folder named with it (former_spelling).
FORMER_NAMES = {"whisper_large_v3": "openai_whisper"}


def current_name(name: str) -> str:
    return FORMER_NAMES.get(name, name)


def former_spelling(text: str) -> str:
    """A folder label as it was written before the renames (each current name its former one)."""
    for former, name in FORMER_NAMES.items():
        text = text.replace(name, former)
    return text


def accept_former_name(name: str) -> str:
    """An engine name given to a command: a former one is taken, with a line that says so."""
    if name in FORMER_NAMES:
        print(f"bench: engine {name} is the former name of {FORMER_NAMES[name]}; running that", file=sys.stderr)
    return current_name(name)


@cache
def engine_names() -> tuple[str, ...]:
    return tuple(
        sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "base" and not m.name.startswith("_"))
    )


def engine_config_classes() -> dict[str, type]:
    return {name: importlib.import_module(f"{__name__}.{name}").Config for name in engine_names()}


def engine_class(name: str):
    name = current_name(name)
    if name not in engine_names():
        raise BenchError(f"unknown engine {name!r}; choose one of: {', '.join(engine_names())}")
    return importlib.import_module(f"{__name__}.{name}").ENGINE


def faster_paths() -> dict[str, str]:
    """Each engine that is a faster path of another (Engine.STOCK), with that other: the
    speed-ups the reference tables show and the CI gate checks."""
    return {name: engine_class(name).STOCK for name in engine_names() if engine_class(name).STOCK}
