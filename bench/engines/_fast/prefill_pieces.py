"""chunked_prefill: a long prompt prefilled a piece at a time.

A prompt's prefill in one forward holds its attention's scores for every position over the
whole cache: quadratic in the prompt, which grows with the clip (Voxtral: 375 positions per
30 s chunk, 21,750 for 29 minutes). In pieces of a fixed number of positions, each attends
the cache slots the pieces before it wrote, so the scores held are a piece's, and bench.serve
can run other batches between the pieces. The first piece takes what does not fill a whole
one, so a prompt's pieces have two shapes at most (two compiled graphs per prompt length);
padding the prompt to whole pieces instead would leave up to a piece of empty slots that every
decode step reads.
"""

from __future__ import annotations

import torch


def piece_bounds(length: int, piece: int | None) -> list[tuple[int, int]]:
    """The (start, end) positions of each piece of a prompt of `length`: the remainder first, then
    whole pieces; the whole prompt when it fits one piece or there is none (the patch off)."""
    if not piece or length <= piece:
        return [(0, length)]
    first = length % piece or piece
    return [(0, first), *((start, start + piece) for start in range(first, length, piece))]


def piece_mask(valid: torch.Tensor, start: int, end: int) -> torch.Tensor:
    """Which cache slots the prompt positions start..end attend, (rows, 1, positions, slots): the
    prompt's slots (valid) up to their own. A padding position attends itself: a softmax row with
    nothing to attend is NaN on some attention kernels, and a NaN in the cache's values reaches
    every row, even masked (0 x NaN)."""
    keys = torch.arange(valid.shape[1], device=valid.device)[None, :]
    queries = torch.arange(start, end, device=valid.device)[:, None]
    return (valid[:, None, None, :] & (keys <= queries)) | (keys == queries)
