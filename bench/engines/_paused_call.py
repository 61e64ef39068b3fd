"""A blocking call made into steps: for engines whose decode loop is someone else's.

bench.serve runs a long clip's batch as steps (Engine.transcribe_steps) and other batches
between them. An engine that decodes through transformers' `generate` has no loop of its own
to pause; but `generate` calls its stopping criteria after every token. So the call runs on a
helper thread, and at each pause it makes (a criterion that calls `pause()` and stops
nothing), it hands control back to the caller's thread and blocks until the caller takes the
next step. Only one of the two threads runs at any moment, so what the call queues on a
device is ordered as if one thread ran it all.

A step abandoned (the generator closed before the call ends) cancels the call at its next
pause, so the helper thread and what it holds never outlive the batch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator

import torch

from bench.engines._engine_thread import engine_thread


class Cancelled(Exception):
    """Raised inside the call at a pause once its steps were abandoned."""


class _Handoff:
    def __init__(self):
        self.to_call = threading.Semaphore(0)
        self.to_caller = threading.Semaphore(0)
        self.done = False
        self.cancelled = False

    def pause(self) -> None:
        """On the call's thread: hand control to the caller; return when it takes the next step."""
        self.to_caller.release()
        self.to_call.acquire()
        if self.cancelled:
            raise Cancelled


def paused_call(call: Callable[[Callable[[], None]], object]) -> Generator[None, None, object]:
    """call(pause) as a generator: each pause() the call makes is a yield, and the generator
    returns what the call returns (or raises what it raises). The call runs on a helper thread
    with the caller's torch thread count, compile settings (_engine_thread) and inference mode."""
    handoff, outcome = _Handoff(), {}
    inference = torch.is_inference_mode_enabled()

    def run() -> None:
        handoff.to_call.acquire()  # the caller's first step
        try:
            with torch.inference_mode(inference):
                outcome["value"] = call(handoff.pause)
        except BaseException as err:  # noqa: BLE001 - raised again on the caller's thread
            outcome["error"] = err
        finally:
            handoff.done = True
            handoff.to_caller.release()

    helper = engine_thread(run, "bench-paused-call")  # the caller's thread count and compile settings
    helper.start()
    try:
        while True:
            handoff.to_call.release()
            handoff.to_caller.acquire()
            if handoff.done:
                break
            yield
    finally:
        if not handoff.done:  # abandoned mid-call: end it at its pause, and wait for it
            handoff.cancelled = True
            handoff.to_call.release()
        helper.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def pause_each_token(pause: Callable[[], None]):
    """A stopping criterion for transformers' generate that stops nothing: it pauses (see
    paused_call) after every token, the prefill's first among them."""
    from transformers import StoppingCriteria

    class PauseEachToken(StoppingCriteria):
        def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
            pause()
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    return PauseEachToken()
