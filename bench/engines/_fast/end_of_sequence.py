"""The decode loop's end-of-sequence read, lagged by one step so the GPU never waits on it."""

import torch


class FinishedFlag:
    """Whether any row is still unfinished, copied to host memory after every step without
    blocking, and read one step later. By then the GPU holds the newer step, so waiting for
    the older copy never leaves it idle; the loop runs at most one step past the end. A CPU
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
        if self.cuda:
            self.events[slot].synchronize()  # done already, or about to: the newer step is queued
        return not self.flags.numpy()[slot]  # read as memory, not a tensor op
