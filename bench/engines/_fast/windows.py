"""attention_window: a decode step attends the cache slots in use, not the static cache's capacity.

A static cache is sized for the longest transcript its batch shape may write, and transformers'
static layers return all of it to the attention: every step read (and, with a mask, computed
over) the whole capacity, so a step cost what the cache could hold. Here each self-attention
layer of the cache returns only the first `Window.size` slots, and the step's mask is cut to
the same length, so the attention reads a window that holds every slot written so far.

Windows are few and fixed, so each is one compiled graph and one CUDA graph: from BASE slots,
doubling, up to the capacity; a step takes the smallest that holds its slots (at most twice
what is in use, or the capacity). The core makes every window a batch shape can reach at its
first batch (the warm-up), so no window is compiled or captured while a pass is timed. The
prefill and the cross-attention's cache (Whisper's encoder positions, all in use) read whole.
"""

from __future__ import annotations

from functools import partial

BASE = 128  # slots of the smallest window


def window_sizes(capacity: int, first_needed: int) -> list[int]:
    """The windows a batch shape can use once `first_needed` slots are filled (its prompt and
    the first step's): doubling from BASE, the ones that hold that many, and the capacity last."""
    sizes, size = [], BASE
    while size < capacity:
        if size >= first_needed:
            sizes.append(size)
        size *= 2
    return [*sizes, capacity]


def size_for(needed: int, sizes: list[int]) -> int:
    return next(size for size in sizes if size >= needed)


class Window:
    """How many cache slots the self-attention layers return: None, all of them (the prefill)."""

    def __init__(self):
        self.size: int | None = None


def _windowed_update(layer, window: Window, key_states, value_states, *args, **kwargs):
    keys, values = type(layer).update(layer, key_states, value_states, *args, **kwargs)
    if window.size is None:
        return keys, values
    return keys[:, :, : window.size], values[:, :, : window.size]


def install(layers, window: Window) -> None:
    """Each static cache layer returns its keys and values cut to window.size (the write is
    the layer's own: every slot is still written where transformers writes it)."""
    for layer in layers:
        layer.update = partial(_windowed_update, layer, window)
