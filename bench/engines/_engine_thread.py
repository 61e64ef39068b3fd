"""A thread that runs an engine with the settings of the thread that set it up.

bench.serve runs its engine on a thread of its own (bench.online.batcher), and an engine that
decodes inside transformers' `generate` runs it on a helper thread while serving
(_paused_call). Two kinds of setting that the engine's set-up and warm-up made on the main
thread are per thread in torch, and a plain new thread starts from their defaults:

- torch's intra-op thread count (OpenMP's, read per thread), on which torch.compile guards: at
  another count, every shape the warm-up compiled meets a recompile;
- torch.compile's config overrides, kept in context variables (torch.utils._config_module), among
  them the recompile limit an engine's plan raises (layers.allow_recompiles): at the default of 8,
  a function past 8 graphs runs eager at every new shape, silently: a server would serve
  another engine than it names (a 10-minute clip's new shapes ran eager, 0 compiles counted).

The thread here takes both from the thread that makes it, at the moment it is made.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable

import torch


def engine_thread(target: Callable[[], None], name: str) -> threading.Thread:
    """A daemon thread (not started) running target with this thread's torch thread count and a
    copy of its context: torch.compile's config as set here."""
    threads, context = torch.get_num_threads(), contextvars.copy_context()

    def run() -> None:
        torch.set_num_threads(threads)
        context.run(target)

    return threading.Thread(target=run, name=name, daemon=True)
