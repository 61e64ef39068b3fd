"""How many tokens a batch may decode, how many it did, and length matching.

Random weights emit random tokens, so in that mode every engine decodes exactly as many
tokens as its own tokenizer needs for the reference: end-of-sequence is forbidden before a
row's target and forced at it. Every engine of every model does it with these functions.
"""

from __future__ import annotations

import torch

from bench.errors import BenchError


def force_length(
    scores: torch.Tensor, generated: int, targets: torch.Tensor, eos: int, in_place: bool = False
) -> torch.Tensor:
    """End-of-sequence forbidden before each row's target, forced at it (`generated` tokens so
    far); finite for rows that are done even where an earlier filter masked it. `in_place`
    writes into `scores`, for decoders whose logit filters must (openai-whisper's)."""
    done = generated >= targets[: scores.shape[0]]
    scores = (
        scores.masked_fill_(done[:, None], -float("inf"))
        if in_place
        else scores.masked_fill(done[:, None], -float("inf"))
    )
    scores[:, eos] = torch.where(done, 0.0, -float("inf")).to(scores.dtype)
    return scores


def check_budget(budget: int, target_tokens: list[int] | None, allowance: str, setting: str) -> None:
    """Refuse a reference that needs more tokens than the engine may decode, naming the setting.
    `allowance` says where the budget comes from ("engine.max_new_tokens=500 per 30 s chunk")."""
    if target_tokens and max(target_tokens) > budget:
        raise BenchError(
            f"a reference needs {max(target_tokens)} tokens, more than {allowance} allows ({budget}); raise {setting}"
        )


def generated_lengths(new_tokens: torch.Tensor, eos: int) -> list[int]:
    """Tokens generated per row before the first end-of-sequence (padding after it excluded)."""
    is_end = new_tokens == eos
    has_end = is_end.any(dim=1)
    first_end = torch.where(has_end, is_end.int().argmax(dim=1), new_tokens.shape[1])
    return first_end.tolist()


def length_matching_processor(targets: list[int], prompt_length: int, eos: int, device: torch.device):
    """force_length as a transformers LogitsProcessor, for generate (new tokens start after
    `prompt_length` positions)."""
    from transformers import LogitsProcessor

    target = torch.tensor(targets, device=device)

    class ForceLength(LogitsProcessor):
        def __call__(self, input_ids, scores):
            return force_length(scores, input_ids.shape[1] - prompt_length, target, eos)

    return ForceLength()
