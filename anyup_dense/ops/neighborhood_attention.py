"""Self-attention over a 2-D token grid restricted to a square window around each query.

Query (y, x) attends to the keys (y + dy, x + dx) with |dy|, |dx| <= r that lie inside the grid:
windows are centred and truncated at the borders (never shifted, no wrap-around). Optional
per-head linear distance penalties (ALiBi-style) are subtracted from the logits:

    s = scale * <q, k> - row_slope[h] * |dy| - col_slope[h] * |dx|

The computation runs offset by offset ((2r+1)^2 shifted products), so memory is
O(B * heads * H * W * ((2r+1)^2 + d)): no dense (H*W) x (H*W) mask or score matrix is built.
"""
from typing import Optional

import torch
import torch.nn.functional as F


def _shifted(x: torch.Tensor, radius: int, dy: int, dx: int) -> torch.Tensor:
    """x [B, nH, H+2r, W+2r, d] zero-padded -> the [B, nH, H, W, d] view shifted by (dy, dx)."""
    h, w = x.shape[2] - 2 * radius, x.shape[3] - 2 * radius
    return x[:, :, radius + dy:radius + dy + h, radius + dx:radius + dx + w]


def neighborhood_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, radius: int, scale: float,
                           row_slopes: Optional[torch.Tensor] = None,
                           col_slopes: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Windowed softmax attention on a grid.

    Args:
        q, k: [B, nH, H, W, d] queries and keys on the same H x W grid.
        v: [B, nH, H, W, dv] values.
        radius: r; the window is (2r+1) x (2r+1), truncated at the grid borders.
        scale: multiplies ``<q, k>`` before the penalties.
        row_slopes, col_slopes: [nH] per-head penalty per unit of row / column distance
            (``None``: no penalty along that axis).
    Returns:
        [B, nH, H, W, dv].
    """
    if q.dim() != 5 or q.shape != k.shape or v.shape[:4] != q.shape[:4]:
        raise ValueError(f"expected q, k [B,nH,H,W,d] and v [B,nH,H,W,dv] on one grid, got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    h, w = q.shape[2:4]
    offsets = [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)]
    k_padded = F.pad(k, (0, 0, radius, radius, radius, radius))
    v_padded = F.pad(v, (0, 0, radius, radius, radius, radius))
    logits = torch.stack([(q * _shifted(k_padded, radius, dy, dx)).sum(-1) for dy, dx in offsets],
                         dim=-1) * scale  # [B, nH, H, W, P]

    row_offsets = torch.tensor([dy for dy, _ in offsets], device=q.device)  # [P]
    col_offsets = torch.tensor([dx for _, dx in offsets], device=q.device)
    for slopes, distance in ((row_slopes, row_offsets), (col_slopes, col_offsets)):
        if slopes is not None:
            penalty = slopes[:, None] * distance.abs().to(logits.dtype)  # [nH, P]
            logits = logits - penalty[None, :, None, None, :]
    rows = torch.arange(h, device=q.device)[:, None] + row_offsets  # [H, P]
    cols = torch.arange(w, device=q.device)[:, None] + col_offsets  # [W, P]
    inside = ((rows >= 0) & (rows < h))[:, None, :] & ((cols >= 0) & (cols < w))[None, :, :]  # [H, W, P]
    probs = logits.masked_fill(~inside, float("-inf")).softmax(dim=-1)

    out = torch.zeros_like(v)
    for index, (dy, dx) in enumerate(offsets):
        out.addcmul_(probs[..., index:index + 1], _shifted(v_padded, radius, dy, dx))
    return out
