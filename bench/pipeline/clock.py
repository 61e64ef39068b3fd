"""Timing of one batch: wall time between device synchronisations, plus named phases.

The whole timed region is bracketed by a synchronisation on each side, so queued GPU
work is charged to the batch that queued it. Phases inside it are marked with CUDA
events rather than extra synchronisations, so marking them does not change what is
measured; on the CPU they are plain perf_counter readings.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import torch

from bench.host import busy

# Phases whose sum is "model time": features already on the device to token ids.
# ("generate" is an engine's whole generate call when it cannot be split further.)
MODEL_PHASES = ("encode", "merge", "prefill", "decode", "generate")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Clock:
    def __init__(self, device: torch.device, energy=None, host: bool = False):
        self.device = device
        self.energy = energy  # a board energy counter (bench.host.energy), read outside the timed interval
        self.energy_j: float | None = None
        self.host = host  # read what else used the machine (bench.host.busy), outside the timed interval too
        self.host_use: dict[str, float | None] = {}
        self._cuda = device.type == "cuda"
        self._marks: list[tuple[str, object, object]] = []
        self._open: dict[str, object] = {}
        self.counts: dict[str, int] = {}  # e.g. decode_steps, for per-step figures
        self.wall_s = 0.0
        self.phases: dict[str, float] = {}

    def __enter__(self) -> Clock:
        synchronize(self.device)
        self._marks, self._open, self.counts = [], {}, {}
        self._h0 = busy.read() if self.host else None
        self._e0 = self.energy.read_j() if self.energy else None
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        synchronize(self.device)
        self.wall_s = time.perf_counter() - self._t0
        self.energy_j = self.energy.read_j() - self._e0 if self.energy else None
        self.host_use = busy.between(self._h0, busy.read()) if self.host else {}
        phases: dict[str, float] = {}
        for name, start, end in self._marks:
            seconds = start.elapsed_time(end) / 1e3 if self._cuda else end - start
            phases[name] = phases.get(name, 0.0) + seconds
        self.phases = phases

    def _mark(self):
        if self._cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    @contextmanager
    def phase(self, name: str):
        # record_function names the phase in a torch.profiler trace; it costs next to
        # nothing when no profiler is running.
        with torch.profiler.record_function(f"phase:{name}"):
            start = self._mark()
            yield
            self._marks.append((name, start, self._mark()))

    # begin/end pairs, for phases that start and stop in different places (module hooks).
    def begin(self, name: str) -> None:
        label = torch.profiler.record_function(f"phase:{name}")
        label.__enter__()
        self._open[name] = (self._mark(), label)

    def end(self, name: str) -> None:
        opened = self._open.pop(name, None)
        if opened is not None:
            start, label = opened
            self._marks.append((name, start, self._mark()))
            label.__exit__(None, None, None)

    def count(self, name: str, n: int) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def is_open(self, name: str) -> bool:
        return name in self._open

    @property
    def model_s(self) -> float:
        return sum(self.phases.get(name, 0.0) for name in MODEL_PHASES)
