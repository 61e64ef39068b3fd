"""torch.cuda's stream and graph calls, emulated on the CPU for the fast-decode core's step.

A CUDA graph records kernels at capture without running them, then each replay runs
them again on the very tensors it saw at capture. The emulation keeps both promises at
the level of the decoder's `step`: capturing records the call and then undoes what running it did to
the KV cache (a real capture writes nothing) and poisons the output; a replay first
checks that the cache, the attention-mask buffer and the step's inputs are still the
tensors captured (a graph holds their addresses), then runs the step and writes its
logits into the captured output. What the engine must get right around a graph (static
inputs copied in before a replay, the warm-up's cache write stepped back, buffers reset
in place between batches) then shows in the tokens on the CPU.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext

import torch


class _Stream:
    def wait_stream(self, other) -> None:
        pass


class Emulation:
    def __init__(self, engine, monkeypatch):
        self.engine, self.captures, self.replays = engine, 0, 0
        emulation = self

        class Graph:
            def __init__(self):
                self.recorded = None

            def replay(self):
                emulation._replay(self.recorded)

        monkeypatch.setattr(torch.cuda, "Stream", _Stream)
        monkeypatch.setattr(torch.cuda, "current_stream", lambda *a, **k: _Stream())
        monkeypatch.setattr(torch.cuda, "stream", lambda stream: nullcontext())
        monkeypatch.setattr(torch.cuda, "CUDAGraph", Graph)
        monkeypatch.setattr(torch.cuda, "graph", self._capture)
        engine.decoder = engine.make_decoder(cuda_graph=True)  # what load() makes on a CUDA device
        self.decoder = engine.decoder

    def _held(self) -> list[torch.Tensor]:
        """Tensors the captured step reads or writes besides its arguments."""
        state = self.decoder.state
        layers = self.decoder.model.self_attention_layers(state.cache)
        return [t for layer in layers for t in (layer.keys, layer.values, layer.cumulative_length)] + [state.valid]

    @contextmanager
    def _capture(self, graph):
        decoder = self.decoder
        before = [t.clone() for t in self._held()]
        real_step, calls = decoder.step, []

        def recording_step(*args):
            out = real_step(*args)
            calls.append((args, out))
            return out

        decoder.step = recording_step  # the closure being captured looks step up on the decoder
        try:
            yield
        finally:
            del decoder.step
        assert len(calls) == 1, "one step per capture"
        for tensor, saved in zip(self._held(), before, strict=True):
            tensor.copy_(saved)  # a capture runs nothing
        args, out = calls[0]
        out.fill_(float("nan"))  # nothing may read the output before a replay
        graph.recorded = (real_step, args, out, self._held())
        self.captures += 1

    def _replay(self, recorded) -> None:
        step, args, out, held = recorded
        assert self.decoder.cache_in_use is self.decoder.state.cache
        now = self._held()
        assert all(a is b for a, b in zip(now, held, strict=True)), "a buffer the graph holds was replaced"
        out.copy_(step(*args))
        self.replays += 1
