"""A long clip held as its encoded bytes and decoded a window at a time, as an engine reaches it.

bench.serve holds what it accepted until it is answered. Decoded whole, a clip holds 64 KB a
second (16 kHz float32): 111 MB for 29 minutes, a FLAC of silence a few hundred kilobytes in.
An engine that transcribes a long clip window by window (Whisper's) needs one window at a
time, so the server checks the upload once, block by block (every check decode_audio makes,
and finite samples), keeps only its bytes and its length, and decodes each 30 s window again
when the engine reaches it: a request holds its upload and one window, whatever its length.
The windows are exactly the slices of decode_audio's array (the same blocks, decoded again).
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence

import numpy as np

from bench.data.audio import decoded_blocks
from bench.data.utterance import samples_problem


class StreamedAudio:
    """A clip of len() 16 kHz samples, known only as its encoded bytes (see the module)."""

    def __init__(self, data: bytes, max_seconds: float, samples: int):
        self.data, self.max_seconds, self.samples = data, max_seconds, samples
        self._blocks: Iterator[np.ndarray] | None = None
        self._held = np.zeros(0, np.float32)  # decoded samples not yet handed out
        self._start = 0  # the index, in the clip, of _held's first sample

    def __len__(self) -> int:
        return self.samples

    def windows(self, size: int) -> StreamedWindows:
        return StreamedWindows(self, size)

    def samples_between(self, start: int, end: int) -> np.ndarray:
        """Samples [start, end) of the clip, decoded now. In order is cheap: what comes before
        start is dropped as it is passed; going back (a batch retried clip by clip) decodes
        from the beginning again."""
        if self._blocks is None or start < self._start:
            self._blocks = decoded_blocks(io.BytesIO(self.data), self.max_seconds)
            self._held, self._start = np.zeros(0, np.float32), 0
        while self._start + len(self._held) < end:
            block = next(self._blocks, None)
            if block is None:
                break
            self._held = np.concatenate([self._held, block])
        offset = start - self._start
        window = self._held[offset : end - self._start].copy()
        self._held, self._start = self._held[max(0, end - self._start) :], max(self._start, end)
        return window


class StreamedWindows(Sequence):
    """A streamed clip's windows of `size` samples: each decoded when it is indexed."""

    def __init__(self, audio: StreamedAudio, size: int):
        self.audio, self.size = audio, size
        self.lengths = [min(size, len(audio) - start) for start in range(0, len(audio), size)]

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, j: int) -> np.ndarray:
        if not 0 <= j < len(self):
            raise IndexError(j)
        return self.audio.samples_between(j * self.size, j * self.size + self.lengths[j])


def checked(data: bytes, max_seconds: float, keep_up_to: int | None) -> tuple[np.ndarray | StreamedAudio, str | None]:
    """Decode the upload once, block by block, with decode_audio's checks: the samples if they
    number keep_up_to or fewer (None: however many), else a StreamedAudio holding only the
    bytes and the length; and what makes the samples unusable (None: nothing)."""
    kept: list[np.ndarray] | None = []
    samples = bad = 0
    for block in decoded_blocks(io.BytesIO(data), max_seconds):
        samples += len(block)
        bad += int(np.count_nonzero(~np.isfinite(block)))
        if kept is not None:
            kept.append(block)
            if keep_up_to is not None and samples > keep_up_to:
                kept = None  # a long clip: decoded again window by window when its turn comes
    problem = samples_problem(samples, bad)
    if kept is None:
        return StreamedAudio(data, max_seconds, samples), problem
    return np.concatenate([np.zeros(0, np.float32), *kept]), problem
