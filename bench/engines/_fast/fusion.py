"""fused_projections: one matrix product where stock makes two or three.

Each decoder layer of the language model projects the same input three times in attention
(q, k, v) and twice in the MLP (gate, up). At batch 1 a decode step is a chain of
matrix-vector products, each reading its weights once; k's and v's (a quarter of q's with
8 key-value heads for 32 query heads) are short kernels, which spend more of their time
starting and draining than a long one does. Whether that matters is for the ablation to say.

Here each group becomes one product over its weights stacked row-wise, and the block
(transformers' own attention or MLP) receives that product as its input, its projections
replaced by slices of it. No model code is copied: the block's forward runs as shipped.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.errors import BenchError

ATTENTION = ("q_proj", "k_proj", "v_proj")
MLP = ("gate_proj", "up_proj")


class Columns(nn.Module):
    """Stands in for a projection: its columns of the product the fused block already made."""

    def __init__(self, start: int, stop: int):
        super().__init__()
        self.start, self.stop = start, stop

    def forward(self, fused: torch.Tensor) -> torch.Tensor:
        return fused[..., self.start : self.stop]

    def extra_repr(self) -> str:
        return f"columns {self.start}:{self.stop}"


class FusedProjections(nn.Module):
    """`block` run on one product of its input with the stacked weights of `names`."""

    def __init__(self, block: nn.Module, names: tuple[str, ...]):
        super().__init__()
        linears = [getattr(block, name) for name in names]
        if not all(type(linear) is nn.Linear for linear in linears):
            kinds = sorted({type(linear).__name__ for linear in linears})
            raise BenchError(f"fused_projections stacks plain nn.Linear weights; {names} are {kinds}")
        if len({linear.in_features for linear in linears}) != 1:
            raise BenchError(f"fused_projections: {names} do not project the same input width")
        biases = [linear.bias for linear in linears]
        # one nn.Linear over the stacked weights (so packed_linears lays it out as any other); made
        # on the meta device, so nothing is allocated before its weight is set
        width = sum(linear.out_features for linear in linears)
        self.projection = nn.Linear(linears[0].in_features, width, bias=False, device="meta")
        with torch.no_grad():
            self.projection.weight = nn.Parameter(torch.cat([linear.weight for linear in linears]), requires_grad=False)
            # a projection without a bias (Whisper's k) adds zeros: x @ W.T + 0 is x @ W.T exactly
            if any(b is not None for b in biases):
                fused_bias = torch.cat(
                    [
                        b if b is not None else linear.weight.new_zeros(linear.out_features)
                        for b, linear in zip(biases, linears, strict=True)
                    ]
                )
                self.projection.bias = nn.Parameter(fused_bias, requires_grad=False)
        start = 0
        for name, linear in zip(names, linears, strict=True):
            # the block's Linear is dropped here, so the stacked copy is the only one kept
            setattr(block, name, Columns(start, start + linear.out_features))
            start += linear.out_features
        self.block = block

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):
        return self.block(self.projection(hidden_states), *args, **kwargs)


def fuse_projections(language_model: nn.Module) -> None:
    """Every decoder layer's q/k/v and gate/up products fused, in place."""
    for layer in language_model.layers:
        layer.self_attn = FusedProjections(layer.self_attn, ATTENTION)
        layer.mlp = FusedProjections(layer.mlp, MLP)


def fuse_self_attention(layers) -> None:
    """Each layer's self-attention q/k/v in one product (a decoder whose MLP has no gate: Whisper's)."""
    for layer in layers:
        layer.self_attn = FusedProjections(layer.self_attn, ATTENTION)
