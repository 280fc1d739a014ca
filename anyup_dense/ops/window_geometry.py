"""Shared pieces of every window-attention backend: the window of each output position and
the argument checks.

Every output pixel (i, j) of an (Ho, Wo) grid attends to a rectangle of keys on the (h, w)
low-resolution grid. The rectangle's rows are

    c = (i + 0.5) / Ho;  lo = clamp(c - r, 0, 1);  hi = clamp(c + r, 0, 1)
    rows floor(lo * h) <= row < ceil(hi * h)

computed in float32 in exactly this order (as the official AnyUp does, whatever the model
dtype), and likewise for columns. Windows are truncated at borders, never shifted; r = 0
means full attention.
"""
import math
import numbers
from typing import Tuple

import torch


def check_window_ratio(ratio) -> float:
    """``ratio`` as a float; a finite real number >= 0 (0 = full attention), else ValueError."""
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not math.isfinite(ratio) or ratio < 0:
        raise ValueError(f"window_ratio must be a finite number >= 0 (0 = full attention), got {ratio!r}")
    return float(ratio)


def window_bounds(out_len: int, in_len: int, ratio: float, device=None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Start (inclusive) and end (exclusive) key index per output position along one axis.

    Returns two int64 tensors of shape [out_len]. Computed in float32 in the official order.
    """
    ratio = check_window_ratio(ratio)
    if ratio == 0:
        start = torch.zeros(out_len, dtype=torch.long, device=device)
        return start, torch.full((out_len,), in_len, dtype=torch.long, device=device)
    centre = (torch.arange(out_len, device=device, dtype=torch.float32) + 0.5) / out_len
    lo = (centre - ratio).clamp(0.0, 1.0)
    hi = (centre + ratio).clamp(0.0, 1.0)
    return (lo * in_len).floor().long(), (hi * in_len).ceil().long()


def check_attention_shapes(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """ValueError unless q [B,heads,Ho,Wo,d], k [B,heads,h,w,d], v [B,C,h,w] agree and are
    non-empty floating-point tensors."""
    if q.dim() != 5 or k.dim() != 5 or v.dim() != 4:
        raise ValueError(f"expected q [B,heads,Ho,Wo,d], k [B,heads,h,w,d], v [B,C,h,w]; got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if q.shape[:2] != k.shape[:2] or q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q {tuple(q.shape)} and k {tuple(k.shape)} disagree on batch, heads or head dim")
    if v.shape[0] != k.shape[0] or v.shape[2:] != k.shape[2:4]:
        raise ValueError(f"v {tuple(v.shape)} must be [B, C, h, w] on the key grid of k {tuple(k.shape)}")
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not x.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
        if x.numel() == 0:
            raise ValueError(f"{name} must not be empty, got shape {tuple(x.shape)}")
