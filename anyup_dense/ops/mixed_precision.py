"""The precision policy of the attention ops (window, neighbourhood), for every backend.

Under ``torch.autocast`` q/k come out of a linear layer in bf16/fp16 while the values (the
backbone's features) stay float32. The ops then compute in q/k's dtype, with the softmax
and every accumulation over many contributions in at least float32; the result has q/k's
dtype. Autocast itself is switched off inside the ops, so what they compute does not
depend on autocast's per-op lists.
"""
from typing import Tuple

import torch


def common_dtype(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """(q, k, v) cast to q/k's (promoted) dtype."""
    dtype = torch.promote_types(q.dtype, k.dtype)
    return q.to(dtype), k.to(dtype), v.to(dtype)


def accumulation_dtype(x: torch.Tensor) -> torch.dtype:
    """float16/bfloat16 -> float32; float32/float64 unchanged (softmax and sums)."""
    return torch.promote_types(x.dtype, torch.float32)


def autocast_off(device: torch.device):
    """A context with autocast disabled on ``device``'s type."""
    return torch.autocast(device.type, enabled=False)
