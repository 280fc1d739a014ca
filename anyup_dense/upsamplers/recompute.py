"""Gradient checkpointing only where autograd would record a graph.

Full-resolution encoders dominate the training memory of the attention upsamplers; recomputing
them in the backward pass (``torch.utils.checkpoint``) gives the same gradients for a fraction
of the memory. Under ``no_grad``, or when neither an input nor a weight needs a gradient, the
function is simply called (checkpointing would only add overhead).
"""
from typing import Callable, Optional

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint


def records_graph(*inputs, module: Optional[nn.Module] = None) -> bool:
    """True when autograd records ``fn(*inputs)``: grad mode is on and a tensor input or one of
    ``module``'s parameters requires a gradient."""
    return torch.is_grad_enabled() and (
        any(isinstance(x, torch.Tensor) and x.requires_grad for x in inputs)
        or (module is not None and any(p.requires_grad for p in module.parameters())))


def recompute_in_backward(fn: Callable[..., torch.Tensor], *inputs, module: Optional[nn.Module] = None,
                          enabled: bool = True) -> torch.Tensor:
    """``fn(*inputs)``, its activations recomputed in the backward pass instead of stored when
    ``enabled`` and a graph is recorded (``module``: the weights ``fn`` uses)."""
    if enabled and records_graph(*inputs, module=module):
        return checkpoint(fn, *inputs, use_reentrant=False)
    return fn(*inputs)
