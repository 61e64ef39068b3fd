"""The decode loop's end-of-sequence read, lagged by one step so the GPU never waits on it.

What happens on CUDA, step by step: after queueing step n the loop queues a copy of "is any
row still unfinished" into pinned host memory and records an event behind it, then reads the
flag of step n-1. If step n-1's event has completed (the GPU keeps up with the host), the
read is plain memory: no wait at all. If not, the host waits on that event while step n sits
queued behind it: the host waits, the GPU does not, so this is not the stall of a read-back
after every step, which leaves the GPU empty until the host queues the next step. The wait
is marked (LAGGED_WAIT) so a profile counts it apart from host syncs.
"""

import torch
from torch.profiler import record_function

LAGGED_WAIT = "eos:lagged_wait"  # the profiler range around the one wait this read may make


class FinishedFlag:
    """Whether any row is still unfinished, copied to host memory after every step without
    blocking, and read one step later; the loop runs at most one step past the end. A CPU
    runs every step to completion: the copy is plain and the read is free."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.flags = torch.ones(2, dtype=torch.bool, pin_memory=self.cuda)
        self.events = [torch.cuda.Event() for _ in range(2)] if self.cuda else None
        self.count = 0

    def copy(self, unfinished: torch.Tensor) -> None:
        slot = self.count % 2
        self.flags[slot].copy_(unfinished.any(), non_blocking=self.cuda)
        if self.cuda:
            self.events[slot].record()
        self.count += 1

    def all_done_before_this_step(self) -> bool:
        """Whether every row had finished at the step before the last copied (two copies back)."""
        if self.count < 2:
            return False
        slot = (self.count - 2) % 2
        if self.cuda and not self.events[slot].query():
            with record_function(LAGGED_WAIT):  # a step is queued behind it: the GPU is not starved
                self.events[slot].synchronize()
        return not self.flags.numpy()[slot]  # read as memory, not a tensor op
