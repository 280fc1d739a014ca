"""Local window cross-attention with AnyUp's semantics: dense reference and chunked torch backend.

The window of each output pixel (a rectangle of keys, truncated at borders; ratio 0 = full
attention) is :func:`~anyup_dense.ops.window_geometry.window_bounds`.
Per head: softmax((q_h / sqrt(d)) . k_h) over the window; the heads' probabilities are
**averaged** and applied to the raw values ``v`` (any channel count C).

Backends (all give the same numbers up to float rounding; choosing one:
:func:`anyup_dense.upsamplers.attention_backend.window_attention`):
  * ``reference``: the dense masked formula, O(Ho*Wo*h*w) memory. Tests only.
  * ``torch``: splits the output grid into tiles of about one key cell (Ho//h x Wo//w
    pixels); a tile's windows all lie inside a small union rectangle (the window plus about
    one key row/column). Per chunk of tiles it gathers the union's keys and values, scores
    each pixel against its union with one batched matmul, masks keys outside the pixel's own
    window, takes the softmax, averages heads and applies a second batched matmul. Peak
    memory is bounded by the chunk, never by the image; no dense mask or logits are built.
  * ``triton``: the GPU kernel, :mod:`anyup_dense.ops.window_attention_triton`.
"""
import math
from typing import Optional, Tuple

import torch
from torch.autograd.function import once_differentiable

from anyup_dense.ops.chunking import tiles_per_chunk
from anyup_dense.ops.mixed_precision import accumulation_dtype
from anyup_dense.ops.window_geometry import check_attention_shapes, check_window_ratio, window_bounds


def dense_window_mask(out_hw: Tuple[int, int], in_hw: Tuple[int, int], ratio: float, device=None) -> torch.Tensor:
    """Bool [Ho*Wo, h*w], True where the key lies inside the query's window (reference only)."""
    (ho, wo), (h, w) = out_hw, in_hw
    r0, r1 = window_bounds(ho, h, ratio, device)
    c0, c1 = window_bounds(wo, w, ratio, device)
    rows = torch.arange(h, device=device)
    cols = torch.arange(w, device=device)
    row_ok = (rows >= r0[:, None]) & (rows < r1[:, None])  # [Ho, h]
    col_ok = (cols >= c0[:, None]) & (cols < c1[:, None])  # [Wo, w]
    return (row_ok[:, None, :, None] & col_ok[None, :, None, :]).reshape(ho * wo, h * w)


def window_attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ratio: float,
                               return_probs: bool = False):
    """Dense masked formula. q [B,nH,Ho,Wo,d], k [B,nH,h,w,d], v [B,C,h,w] -> [B,C,Ho,Wo].

    With ``return_probs`` also returns the head-averaged probabilities [B, Ho*Wo, h*w].
    """
    check_attention_shapes(q, k, v)
    ratio = check_window_ratio(ratio)
    b, nh, ho, wo, d = q.shape
    h, w = k.shape[2:4]
    qf = q.reshape(b, nh, ho * wo, d) * (1.0 / math.sqrt(d))
    kf = k.reshape(b, nh, h * w, d)
    logits = qf @ kf.transpose(-1, -2)  # [B, nH, Q, N]
    if ratio > 0:
        inside = dense_window_mask((ho, wo), (h, w), ratio, device=q.device)
        logits = logits.masked_fill(~inside, float("-inf"))
    probs = logits.softmax(dim=-1, dtype=accumulation_dtype(q)).to(q.dtype).mean(dim=1)  # [B, Q, N]
    out = probs @ v.flatten(2).transpose(1, 2)  # [B, Q, C]
    out = out.transpose(1, 2).reshape(b, v.shape[1], ho, wo)
    return (out, probs) if return_probs else out


def _tile_windows(out_len: int, in_len: int, ratio: float, tile: int, device):
    """Tiles of ``tile`` consecutive output positions along one axis and their union windows.

    Window bounds are non-decreasing in the position, so a tile's union is
    [start(first), end(last)). Returns
      * ``positions`` [T, tile]: output positions of each tile (the last tile is padded by
        repeating the final position);
      * ``keys`` [T, U]: key indices of each union window, clamped into range (U = widest);
      * ``outside`` [T, tile, U]: True where a key lies outside that position's own window
        (always True for the clamped padding keys).
    """
    start, end = window_bounds(out_len, in_len, ratio, device)
    n_tiles = -(-out_len // tile)
    positions = torch.arange(n_tiles * tile, device=device).view(n_tiles, tile).clamp(max=out_len - 1)
    first = start[positions[:, 0]]
    width = int((end[positions[:, -1]] - first).max())
    keys = first[:, None] + torch.arange(width, device=device)  # [T, U], unclamped
    outside = (keys[:, None, :] < start[positions][..., None]) | (keys[:, None, :] >= end[positions][..., None])
    return positions, keys.clamp(max=in_len - 1), outside


class _Tiling:
    """Output tiles of about one key cell (Ho//h x Wo//w pixels), their union windows and
    the chunks they are processed in (see :func:`window_attention_torch`)."""

    def __init__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ratio: float,
                 max_pixels_per_chunk: Optional[int]):
        check_attention_shapes(q, k, v)
        b, nh, ho, wo, d = q.shape
        h, w = k.shape[2:4]
        self.out_hw, self.key_w = (ho, wo), w
        self.row_pos, self.row_keys, self.row_outside = _tile_windows(ho, h, ratio, max(1, ho // h), q.device)
        self.col_pos, self.col_keys, self.col_outside = _tile_windows(wo, w, ratio, max(1, wo // w), q.device)
        (nr, tr), (nc, tc) = self.row_pos.shape, self.col_pos.shape
        self.tile, self.union = (tr, tc), (self.row_keys.shape[1], self.col_keys.shape[1])
        uh, uw = self.union
        self.grid = (nr, nc)
        self.step = tiles_per_chunk((nr, nc), tr * tc, b * uh * uw * max(nh * tr * tc, v.shape[1]),
                                    max_pixels_per_chunk)

    def chunks(self):
        """Per chunk: (tile rows, tile cols, query pixel index pair -> [n_r, n_c, tr, tc],
        key index pair -> [n_r, n_c, Uh, Uw], outside mask [n_r, n_c, tr*tc, Uh*Uw])."""
        (nr, nc), (step_r, step_c) = self.grid, self.step
        (tr, tc), (uh, uw) = self.tile, self.union
        for r0 in range(0, nr, step_r):
            rows = slice(r0, min(nr, r0 + step_r))
            for c0 in range(0, nc, step_c):
                cols = slice(c0, min(nc, c0 + step_c))
                n_r, n_c = self.row_pos[rows].shape[0], self.col_pos[cols].shape[0]
                qpix = (self.row_pos[rows][:, None, :, None], self.col_pos[cols][None, :, None, :])
                kpix = (self.row_keys[rows][:, None, :, None], self.col_keys[cols][None, :, None, :])
                outside = (self.row_outside[rows][:, None, :, None, :, None]
                           | self.col_outside[cols][None, :, None, :, None, :]).reshape(n_r, n_c, tr * tc, uh * uw)
                yield rows, cols, qpix, kpix, outside

    def gather_queries(self, x: torch.Tensor, qpix) -> torch.Tensor:
        """[B, X, Ho, Wo, D] -> this chunk's tiles [B, X, n_r, n_c, tr*tc, D]."""
        n_r, n_c = qpix[0].shape[0], qpix[1].shape[1]
        return x[:, :, qpix[0], qpix[1]].reshape(*x.shape[:2], n_r, n_c, self.tile[0] * self.tile[1], x.shape[-1])

    def gather_keys(self, x: torch.Tensor, kpix) -> torch.Tensor:
        """[B, X, h, w, D] -> this chunk's union windows [B, X, n_r, n_c, Uh*Uw, D]."""
        n_r, n_c = kpix[0].shape[0], kpix[1].shape[1]
        return x[:, :, kpix[0], kpix[1]].reshape(*x.shape[:2], n_r, n_c, self.union[0] * self.union[1], x.shape[-1])

    def key_index(self, kpix) -> torch.Tensor:
        """Flat key index r*w + c of this chunk's union windows, [n_r*n_c*Uh*Uw]."""
        return (kpix[0] * self.key_w + kpix[1]).reshape(-1)

    def head_probs(self, q: torch.Tensor, k: torch.Tensor, qpix, kpix, outside) -> torch.Tensor:
        """Per-head window softmax of one chunk, [B, nH, n_r, n_c, tr*tc, Uh*Uw]
        (``q`` already scaled by 1/sqrt(d))."""
        scores = self.gather_queries(q, qpix) @ self.gather_keys(k, kpix).transpose(-1, -2)
        # float32 (or wider) softmax whatever the input dtype, as the Triton kernels do
        return scores.masked_fill(outside, float("-inf")).softmax(dim=-1, dtype=accumulation_dtype(q)).to(q.dtype)


def _window_attention_torch_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                    tiling: _Tiling) -> torch.Tensor:
    """q (scaled) [B,nH,Ho,Wo,d], k [B,nH,h,w,d], v [B,C,h,w] -> [B,C,Ho,Wo], chunk by chunk."""
    b, c = v.shape[:2]
    (nr, nc), (tr, tc) = tiling.grid, tiling.tile
    v_last = v.permute(0, 2, 3, 1)[:, None]  # [B, 1, h, w, C]
    out = q.new_empty(b, nr * tr, nc * tc, c)
    out_tiles = out.view(b, nr, tr, nc, tc, c)
    for rows, cols, qpix, kpix, outside in tiling.chunks():
        probs = tiling.head_probs(q, k, qpix, kpix, outside).mean(dim=1)  # [B, n_r, n_c, tr*tc, U]
        tile_out = probs @ tiling.gather_keys(v_last, kpix)[:, 0]  # [B, n_r, n_c, tr*tc, C]
        n_r, n_c = tile_out.shape[1:3]
        out_tiles[:, rows, :, cols] = tile_out.view(b, n_r, n_c, tr, tc, c).transpose(2, 3)
    ho, wo = tiling.out_hw
    return out[:, :ho, :wo].permute(0, 3, 1, 2)


class _WindowAttentionTorch(torch.autograd.Function):
    """Chunked forward; backward recomputes each chunk's probabilities instead of storing
    them, so training memory is bounded by the chunk as well. Gradients (per head h, with
    P the head average and dP = dO . V):  dV = P^T dO,  dS_h = P_h (dP - sum(P_h dP)) / nH,
    dq_h = dS_h k_h,  dk_h = dS_h^T q_h  (q, k scaled by 1/sqrt(d) as in the forward)."""

    @staticmethod
    def forward(ctx, q, k, v, ratio, max_pixels_per_chunk):
        scaled_q = q * (1.0 / math.sqrt(q.shape[-1]))
        tiling = _Tiling(q, k, v, ratio, max_pixels_per_chunk)
        ctx.save_for_backward(scaled_q, k, v)
        ctx.tiling = tiling
        return _window_attention_torch_forward(scaled_q, k, v, tiling)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        scaled_q, k, v = ctx.saved_tensors
        tiling = ctx.tiling
        b, nh, ho, wo, d = scaled_q.shape
        c = v.shape[1]
        (nr, nc), (tr, tc) = tiling.grid, tiling.tile
        # Work on the padded tile grid: every tile owns a disjoint block, and the padding
        # (which repeats real pixels in the forward) gets a zero output gradient.
        d_out_grid = grad_out.new_zeros(b, 1, nr * tr, nc * tc, c)
        d_out_grid[:, 0, :ho, :wo] = grad_out.permute(0, 2, 3, 1)
        d_out_tiles = d_out_grid.view(b, 1, nr, tr, nc, tc, c)
        dq_grid = scaled_q.new_zeros(b, nh, nr * tr, nc * tc, d)
        dq_tiles = dq_grid.view(b, nh, nr, tr, nc, tc, d)
        v_last = v.permute(0, 2, 3, 1)[:, None]  # [B, 1, h, w, C]
        # keys receive contributions from many tiles: accumulate in float32 (or wider)
        dk = torch.zeros_like(k, dtype=accumulation_dtype(k)).flatten(2, 3)  # [B, nH, h*w, d]
        dv = torch.zeros_like(v_last, dtype=accumulation_dtype(v)).flatten(2, 3)  # [B, 1, h*w, C]
        for rows, cols, qpix, kpix, outside in tiling.chunks():
            head_probs = tiling.head_probs(scaled_q, k, qpix, kpix, outside)  # [B, nH, n_r, n_c, T, U]
            n_r, n_c = head_probs.shape[2:4]
            d_out = d_out_tiles[:, :, rows, :, cols].transpose(3, 4).reshape(b, 1, n_r, n_c, tr * tc, c)
            keys_flat = tiling.key_index(kpix)
            probs = head_probs.mean(dim=1, keepdim=True)
            dv.index_add_(2, keys_flat, (probs.transpose(-1, -2) @ d_out).flatten(2, 4).to(dv.dtype))
            d_probs = d_out @ tiling.gather_keys(v_last, kpix).transpose(-1, -2)  # [B, 1, n_r, n_c, T, U]
            d_scores = head_probs * (d_probs - (head_probs * d_probs).sum(-1, keepdim=True)) / nh
            dq_chunk = d_scores @ tiling.gather_keys(k, kpix)  # [B, nH, n_r, n_c, T, d]
            dq_tiles[:, :, rows, :, cols] = dq_chunk.view(b, nh, n_r, n_c, tr, tc, d).transpose(3, 4)
            dk.index_add_(2, keys_flat, (d_scores.transpose(-1, -2) @ tiling.gather_queries(scaled_q, qpix))
                          .flatten(2, 4).to(dk.dtype))
        dq = dq_grid[:, :, :ho, :wo] * (1.0 / math.sqrt(d))  # the scores use q / sqrt(d)
        dv = dv.view(b, *v.shape[2:], c).permute(0, 3, 1, 2).to(v.dtype)
        return dq, dk.view_as(k).to(k.dtype), dv, None, None


def window_attention_torch(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ratio: float,
                           max_pixels_per_chunk: Optional[int] = None) -> torch.Tensor:
    """Tiled union-window path. q [B,nH,Ho,Wo,d], k [B,nH,h,w,d], v [B,C,h,w] -> [B,C,Ho,Wo].

    Per chunk of n output tiles (tr x tc pixels each, union window Uh x Uw keys):
    queries [B,nH,n,tr*tc,d] @ union keys [B,nH,n,d,Uh*Uw] -> scores; keys outside each
    pixel's window are set to -inf; softmax, mean over heads -> [B,n,tr*tc,Uh*Uw];
    @ union values [B,n,Uh*Uw,C]. Differentiable in q, k and v; the backward recomputes
    each chunk, so neither pass keeps more than one chunk's scores. Once differentiable:
    a second derivative (``create_graph=True``) raises instead of silently dropping terms.
    """
    return _WindowAttentionTorch.apply(q, k, v, ratio, max_pixels_per_chunk)
