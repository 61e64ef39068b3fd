"""Engine registry: every module in this package (except base) is one engine.

A module named ``x`` provides ``Config`` (an ``EngineConfig`` subclass with name "x")
and ``ENGINE`` (its ``Engine`` subclass); conf/engine/x.yaml selects it. Engine modules
import their heavy libraries inside ``load`` so discovering them stays cheap.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from bench.errors import BenchError


@cache
def engine_names() -> tuple[str, ...]:
    return tuple(
        sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "base" and not m.name.startswith("_"))
    )


def engine_config_classes() -> dict[str, type]:
    return {name: importlib.import_module(f"{__name__}.{name}").Config for name in engine_names()}


def engine_class(name: str):
    if name not in engine_names():
        raise BenchError(f"unknown engine {name!r}; choose one of: {', '.join(engine_names())}")
    return importlib.import_module(f"{__name__}.{name}").ENGINE


def faster_paths() -> dict[str, str]:
    """Each engine that is a faster path of another (Engine.STOCK), with that other: the
    speed-ups the reference tables show and the CI gate checks."""
    return {name: engine_class(name).STOCK for name in engine_names() if engine_class(name).STOCK}
