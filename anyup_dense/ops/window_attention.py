"""Local window cross-attention with AnyUp's semantics.

Every output pixel (i, j) of an (Ho, Wo) grid attends to a rectangle of keys on the
(h, w) low-resolution grid. The rectangle's rows are

    c = (i + 0.5) / Ho;  lo = clamp(c - r, 0, 1);  hi = clamp(c + r, 0, 1)
    rows floor(lo * h) <= row < ceil(hi * h)

computed in float32 in exactly this order (as the official AnyUp does, whatever the model
dtype), and likewise for columns. Windows are truncated at borders, never shifted; r = 0
means full attention. Per head: softmax((q_h / sqrt(d)) . k_h) over the window; the heads'
probabilities are **averaged** and applied to the raw values ``v`` (any channel count C).

Backends (all give the same numbers up to float rounding):
  * ``reference``: the dense masked formula, O(Ho*Wo*h*w) memory. Tests only.
  * ``torch``: splits the output grid into tiles of about one key cell (Ho//h x Wo//w
    pixels); a tile's windows all lie inside a small union rectangle (the window plus about
    one key row/column). Per chunk of tiles it gathers the union's keys and values, scores
    each pixel against its union with one batched matmul, masks keys outside the pixel's own
    window, takes the softmax, averages heads and applies a second batched matmul. Peak
    memory is bounded by the chunk, never by the image; no dense mask or logits are built.
  * ``triton``: the GPU kernel (``anyup_dense.ops.window_attention_triton``) where present.
"""
import math
from typing import Optional, Tuple

import torch

BACKENDS = ("auto", "reference", "torch", "triton")

# Elements of the largest per-chunk buffer of the torch backend (scores [B, heads, tiles,
# pixels, union] or gathered values [B, tiles, union, C]); 2**24 float32 = 64 MiB, a few
# such buffers live at once.
DEFAULT_CHUNK_ELEMENTS = 2 ** 24


def window_bounds(out_len: int, in_len: int, ratio: float, device=None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Start (inclusive) and end (exclusive) key index per output position along one axis.

    Returns two int64 tensors of shape [out_len]. Computed in float32 in the official order.
    """
    if ratio == 0:
        start = torch.zeros(out_len, dtype=torch.long, device=device)
        return start, torch.full((out_len,), in_len, dtype=torch.long, device=device)
    centre = (torch.arange(out_len, device=device, dtype=torch.float32) + 0.5) / out_len
    lo = (centre - ratio).clamp(0.0, 1.0)
    hi = (centre + ratio).clamp(0.0, 1.0)
    return (lo * in_len).floor().long(), (hi * in_len).ceil().long()


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


def _check_shapes(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    if q.dim() != 5 or k.dim() != 5 or v.dim() != 4:
        raise ValueError(f"expected q [B,heads,Ho,Wo,d], k [B,heads,h,w,d], v [B,C,h,w]; got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if q.shape[:2] != k.shape[:2] or q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q {tuple(q.shape)} and k {tuple(k.shape)} disagree on batch, heads or head dim")
    if v.shape[0] != k.shape[0] or v.shape[2:] != k.shape[2:4]:
        raise ValueError(f"v {tuple(v.shape)} must be [B, C, h, w] on the key grid of k {tuple(k.shape)}")


def window_attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ratio: float,
                               return_probs: bool = False):
    """Dense masked formula. q [B,nH,Ho,Wo,d], k [B,nH,h,w,d], v [B,C,h,w] -> [B,C,Ho,Wo].

    With ``return_probs`` also returns the head-averaged probabilities [B, Ho*Wo, h*w].
    """
    _check_shapes(q, k, v)
    b, nh, ho, wo, d = q.shape
    h, w = k.shape[2:4]
    qf = q.reshape(b, nh, ho * wo, d) * (1.0 / math.sqrt(d))
    kf = k.reshape(b, nh, h * w, d)
    logits = qf @ kf.transpose(-1, -2)  # [B, nH, Q, N]
    if ratio > 0:
        inside = dense_window_mask((ho, wo), (h, w), ratio, device=q.device)
        logits = logits.masked_fill(~inside, float("-inf"))
    probs = logits.softmax(dim=-1).mean(dim=1)  # [B, Q, N]
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


def tiles_per_chunk(grid: Tuple[int, int], per_tile_pixels: int, per_tile_elements: int,
                    max_pixels_per_chunk: Optional[int] = None,
                    max_elements: int = DEFAULT_CHUNK_ELEMENTS) -> Tuple[int, int]:
    """(tile rows, tile columns) per chunk of a grid of (rows, cols) tiles.

    The chunk holds at most ``max_pixels_per_chunk`` output pixels if given, else at most
    ``max_elements`` buffer entries (``per_tile_elements`` per tile); whole tile rows when
    they fit, else part of one tile row; at least one tile.
    """
    if max_pixels_per_chunk is not None:
        if max_pixels_per_chunk < 1:
            raise ValueError(f"max_pixels_per_chunk must be >= 1, got {max_pixels_per_chunk}")
        budget = max_pixels_per_chunk // per_tile_pixels
    else:
        budget = max_elements // max(per_tile_elements, 1)
    rows, cols = grid
    if budget >= cols:
        return min(rows, budget // cols), cols
    return 1, max(1, budget)


def window_attention_torch(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ratio: float,
                           max_pixels_per_chunk: Optional[int] = None) -> torch.Tensor:
    """Tiled union-window path. q [B,nH,Ho,Wo,d], k [B,nH,h,w,d], v [B,C,h,w] -> [B,C,Ho,Wo].

    Per chunk of n output tiles (tr x tc pixels each, union window Uh x Uw keys):
    queries [B,nH,n,tr*tc,d] @ union keys [B,nH,n,d,Uh*Uw] -> scores; keys outside each
    pixel's window are set to -inf; softmax, mean over heads -> [B,n,tr*tc,Uh*Uw];
    @ union values [B,n,Uh*Uw,C]. The result is a (non-contiguous) view of a [B,Ho,Wo,C] buffer.
    """
    _check_shapes(q, k, v)
    b, nh, ho, wo, d = q.shape
    h, w = k.shape[2:4]
    c = v.shape[1]
    row_pos, row_keys, row_outside = _tile_windows(ho, h, ratio, max(1, ho // h), q.device)
    col_pos, col_keys, col_outside = _tile_windows(wo, w, ratio, max(1, wo // w), q.device)
    (nr, tr), (nc, tc) = row_pos.shape, col_pos.shape
    uh, uw = row_keys.shape[1], col_keys.shape[1]
    step_r, step_c = tiles_per_chunk((nr, nc), tr * tc, b * uh * uw * max(nh * tr * tc, c),
                                     max_pixels_per_chunk)
    q = q * (1.0 / math.sqrt(d))
    v_last = v.permute(0, 2, 3, 1)  # [B, h, w, C]
    out = q.new_empty(b, nr * tr, nc * tc, c)
    out_tiles = out.view(b, nr, tr, nc, tc, c)
    for r0 in range(0, nr, step_r):
        rows = slice(r0, min(nr, r0 + step_r))
        for c0 in range(0, nc, step_c):
            cols = slice(c0, min(nc, c0 + step_c))
            n_r, n_c = row_pos[rows].shape[0], col_pos[cols].shape[0]
            qpix = (row_pos[rows][:, None, :, None], col_pos[cols][None, :, None, :])  # -> [n_r, n_c, tr, tc]
            kpix = (row_keys[rows][:, None, :, None], col_keys[cols][None, :, None, :])  # -> [n_r, n_c, Uh, Uw]
            scores = (q[:, :, qpix[0], qpix[1]].reshape(b, nh, n_r, n_c, tr * tc, d)
                      @ k[:, :, kpix[0], kpix[1]].reshape(b, nh, n_r, n_c, uh * uw, d).transpose(-1, -2))
            outside = (row_outside[rows][:, None, :, None, :, None]
                       | col_outside[cols][None, :, None, :, None, :]).reshape(n_r, n_c, tr * tc, uh * uw)
            probs = scores.masked_fill(outside, float("-inf")).softmax(dim=-1).mean(dim=1)
            tile_out = probs @ v_last[:, kpix[0], kpix[1]].reshape(b, n_r, n_c, uh * uw, c)  # [B,n_r,n_c,tr*tc,C]
            out_tiles[:, rows, :, cols] = tile_out.view(b, n_r, n_c, tr, tc, c).transpose(2, 3)
    return out[:, :ho, :wo].permute(0, 3, 1, 2)


def triton_available(device: torch.device) -> bool:
    """True when the Triton backend exists in this install and can run on ``device``."""
    if device.type != "cuda":
        return False
    try:
        from anyup_dense.ops import window_attention_triton  # noqa: F401
    except ImportError:
        return False
    return True


def window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ratio: float, backend: str = "auto",
                     max_pixels_per_chunk: Optional[int] = None) -> torch.Tensor:
    """AnyUp window attention. q [B,nH,Ho,Wo,d], k [B,nH,h,w,d], v [B,C,h,w] -> [B,C,Ho,Wo].

    ``backend``: ``"auto"`` (Triton on CUDA when available, else torch), ``"torch"``,
    ``"triton"`` or ``"reference"`` (dense; tests only). ``max_pixels_per_chunk`` bounds
    the output pixels processed at once by the torch backend.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        backend = "triton" if triton_available(q.device) else "torch"
    if backend == "reference":
        return window_attention_reference(q, k, v, ratio)
    if backend == "torch":
        return window_attention_torch(q, k, v, ratio, max_pixels_per_chunk)
    from anyup_dense.ops.window_attention_triton import window_attention_triton

    return window_attention_triton(q, k, v, ratio)
