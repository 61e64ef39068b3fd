"""grouped_attention: a decode step's attention reads each key-value head once.

A grouped-query decoder (Voxtral's: 32 query heads share 8 key-value heads) attends each
key-value head from several query heads. transformers' SDPA path copies the keys and values
once per query head (repeat_kv) unless it runs eagerly at one query position or without a
mask; inside torch.compile, with the static cache's mask, as the compiled decode step runs,
it writes and reads four copies of every layer's whole cache each step (at batch 32 and 891
slots, about 1 GB a layer). At one query position the query heads of one key-value head can
stand as that head's queries instead: the same products, each key and value read once.

The attention function here does that for one-position steps and hands every other call
(the prefill, a model without grouped heads such as Whisper's) to transformers' own SDPA
function, unchanged. It is registered with transformers under NAME, for attention and masks
(the masks are SDPA's), and a model takes it by its config's attention implementation.
"""

from __future__ import annotations

import torch

NAME = "bench_grouped_sdpa"


def grouped_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """transformers' attention signature: (rows, heads, positions, dim) in, (rows, positions,
    heads, dim) out, and no attention weights."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = getattr(module, "num_key_value_groups", 1)
    per_head_mask = attention_mask is not None and attention_mask.shape[1] != 1
    if query.shape[2] != 1 or groups == 1 or dropout or per_head_mask or kwargs.get("position_bias") is not None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    rows, heads, _, dim = query.shape
    # (rows, kv heads, the query heads of each, dim): one key-value head's query heads as its queries
    grouped = query.reshape(rows, heads // groups, groups, dim)
    out = torch.nn.functional.scaled_dot_product_attention(grouped, key, value, attn_mask=attention_mask, scale=scaling)
    return out.reshape(rows, heads, 1, value.shape[-1]).transpose(1, 2).contiguous(), None


def register() -> None:
    """Make NAME an attention implementation transformers knows (idempotent)."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    AttentionInterface.register(NAME, grouped_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)


def use_grouped_attention(config) -> None:
    """Have the model of this config attend through grouped_attention."""
    register()
    config._attn_implementation = NAME
