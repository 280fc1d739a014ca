"""Running a numerically fragile sub-module in float32 inside a low-precision model.

Under ``torch.autocast`` or after ``model.to(torch.bfloat16)``, some layers lose all their
signal to rounding (AnyUp's feature-agnostic layer: a softmax whose outputs are all about
1/M, followed by a GroupNorm that amplifies their tiny spread). :func:`forward_in_float32`
runs such a module with float32 (or wider) weights and inputs and autocast off; gradients
still reach the module's own (low-precision) parameters through the casts.
"""
import torch
import torch.nn as nn
from torch.func import functional_call

from anyup_dense.ops.mixed_precision import accumulation_dtype, autocast_off


def forward_in_float32(module: nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
    """``module(*inputs)`` computed in at least float32, whatever the autocast state and the
    module's dtype. The result is float32 (float64 for a float64 module and inputs)."""
    inputs = tuple(x.to(accumulation_dtype(x)) for x in inputs)
    state = {name: t.to(accumulation_dtype(t)) if t.is_floating_point() else t
             for name, t in [*module.named_parameters(), *module.named_buffers()]}
    with autocast_off(inputs[0].device):
        return functional_call(module, state, inputs)
