"""packed_linears: on the CPU, the decoder's matrix products through oneDNN, each weight laid
out for it once, at load.

A decode step reads every weight of the decoder and of the output projection once per token:
at batch 1 a chain of matrix-vector products, at batch 8 products eight rows tall, both bound
by how fast the weights stream from memory. nn.Linear hands each to the BLAS the PyTorch wheel
was built with (MKL on x86), over the weight as stored (out x in); oneDNN's inner product reads
a copy reordered into the blocks its kernels walk. Which is faster depends on the CPU and the
shape: the ablation (this patch off alone) measures it, and a profile's decode row gives the
step's milliseconds either way.

Inductor makes a similar trade when it freezes weights (torch._inductor.config.freezing), but
for float32 on x86 it packs them for MKL, not oneDNN; and a oneDNN tensor cannot enter a
compiled graph as an input. So the product is an operator of bench's own,
bench::packed_linear, opaque to the compiler: a compiled step calls it like any aten operator,
and it finds its reordered weight by a key: a one-element tensor of the module's own, found by
its address (reading its value would be a scalar read, which a profile counts as a host sync).
A tensor, not a Python int: one function compiled for every decoder layer (compiled_step under
a graph, compiled_prefill) then takes it as an input like the layer's weights, where an int
would be a constant of the graph and compile it again for each layer. The dense weight is
dropped (a copy is kept only where another module shares it: Whisper's output projection is
its token embedding).
"""

from __future__ import annotations

import weakref

import torch
from torch import nn

_LIBRARY = torch.library.Library("bench", "DEF")
_LIBRARY.define("packed_linear(Tensor x, Tensor? bias, int out_features, Tensor slot) -> Tensor")
_MODULES: dict[int, weakref.ref] = {}  # its key's address -> the PackedLinear holding that weight


def _packed_linear(x: torch.Tensor, bias: torch.Tensor | None, out_features: int, slot: torch.Tensor) -> torch.Tensor:
    weight = _MODULES[slot.data_ptr()]().packed_weight
    return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight, bias, "none", [], "")


_LIBRARY.impl("packed_linear", _packed_linear, "CPU")


@torch.library.register_fake("bench::packed_linear")
def _packed_linear_shape(x, bias, out_features, slot):
    return x.new_empty(*x.shape[:-1], out_features)


def available(device: torch.device, dtype: torch.dtype) -> bool:
    """Where the patch acts: float32 on a CPU whose PyTorch has oneDNN (elsewhere it is inert)."""
    return device.type == "cpu" and dtype == torch.float32 and torch.backends.mkldnn.is_available()


class PackedLinear(nn.Module):
    """An nn.Linear whose product is one oneDNN call over its weight reordered once."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.bias = linear.bias
        with torch.no_grad():
            self.packed_weight = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach())
        self.register_buffer("slot", torch.zeros(1), persistent=False)  # its address is the key
        address = self.slot.data_ptr()
        _MODULES[address] = weakref.ref(self)
        weakref.finalize(self, _MODULES.pop, address, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.bench.packed_linear(x, self.bias, self.out_features, self.slot)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, oneDNN-packed"


def pack_linears(module: nn.Module) -> int:
    """Every nn.Linear below `module` replaced by its PackedLinear, in place; how many."""
    replaced = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                setattr(parent, name, PackedLinear(child))
                replaced += 1
    return replaced
