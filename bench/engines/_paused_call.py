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

`generate` calls its criteria only between tokens, so its first token (the audio encoder over
every chunk and the prefill of the whole prompt: seconds for half an hour of audio) would be
one step; pause_after_layers adds a pause after each layer of a stack while the call runs.
Host work that touches no device (a processor turning a clip into features) needs no turn at
all: beside() runs it on a thread of its own while the caller's thread runs other batches.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterable

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


def pause_after_layers(layers: Iterable[torch.nn.Module], pause: Callable[[], None], when=None) -> list:
    """Forward hooks that pause (see paused_call) after each of these layers runs on this thread,
    when(its input) says so (always, without when): other threads' calls through the same layers,
    batches run in a pause among them, pass straight on. The hooks' handles: remove them when
    the call ends. They change nothing the layers compute."""
    owner = threading.get_ident()

    def hook(module, args, output) -> None:
        if threading.get_ident() == owner and (when is None or when(args[0])):
            pause()

    return [layer.register_forward_hook(hook) for layer in layers]


def beside(call: Callable[[], object], poll_s: float = 0.02) -> Generator[None, None, object]:
    """call() as steps, run on a thread of its own (the caller's torch thread count and compile
    settings) while the caller's thread takes other turns: each step waits up to poll_s for it,
    so a batch started meanwhile waits at most that. For host work only: what it queued on a
    device would not be ordered with the caller's. Steps abandoned leave the work to end on its
    own thread, its result dropped."""
    finished, outcome = threading.Event(), {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as err:  # noqa: BLE001 - raised again on the caller's thread
            outcome["error"] = err
        finally:
            finished.set()

    engine_thread(run, "bench-beside").start()
    while not finished.wait(poll_s):
        yield
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
