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
  * ``torch``: per chunk of output rows, scores each query against the key rows of its
    window (a batched matmul over the row band), gathers the window's columns, takes the
    softmax over the window only, and applies it with a second matmul. Peak memory is bounded
    by the chunk, never by the image; no dense mask or logits are built.
  * ``triton``: the GPU kernel (``anyup_dense.ops.window_attention_triton``) where present.
"""
import math
from typing import Optional, Tuple

import torch

BACKENDS = ("auto", "reference", "torch", "triton")

# Elements of the per-chunk score tensor [B, heads, rows, Wo, Kh, w] in the torch backend
# (2**24 float32 = 64 MiB; a few such buffers live at once).
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


def _axis_windows(out_len: int, in_len: int, ratio: float, device):
    """Index [out_len, K] of each window's keys (clamped) and its validity mask; K = widest window."""
    start, end = window_bounds(out_len, in_len, ratio, device)
    width = int((end - start).max())
    offsets = torch.arange(width, device=device)
    index = (start[:, None] + offsets).clamp(max=in_len - 1)
    valid = offsets[None, :] < (end - start)[:, None]
    return index, valid


def rows_per_chunk(out_hw: Tuple[int, int], key_rows: int, key_cols: int, batch_heads: int,
                   max_pixels_per_chunk: Optional[int] = None,
                   max_elements: int = DEFAULT_CHUNK_ELEMENTS) -> int:
    """Output rows per chunk: bounded by ``max_pixels_per_chunk`` output pixels if given,
    else by ``max_elements`` entries of the chunk's score tensor. At least one row."""
    ho, wo = out_hw
    if max_pixels_per_chunk is not None:
        if max_pixels_per_chunk < 1:
            raise ValueError(f"max_pixels_per_chunk must be >= 1, got {max_pixels_per_chunk}")
        return max(1, min(ho, max_pixels_per_chunk // wo))
    per_row = batch_heads * wo * key_rows * key_cols
    return max(1, min(ho, max_elements // max(per_row, 1)))


def window_attention_torch(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ratio: float,
                           max_pixels_per_chunk: Optional[int] = None) -> torch.Tensor:
    """Gathered-window path. q [B,nH,Ho,Wo,d], k [B,nH,h,w,d], v [B,C,h,w] -> [B,C,Ho,Wo].

    Per chunk of output rows: scores against the key rows of each row's window
    [B,nH,rows,Wo,Kh,w] (one matmul), gather each pixel's window columns
    [B,nH,rows,Wo,Kh,Kw], mask truncated entries, softmax over the window, average heads,
    scatter the probabilities back onto the row band and multiply with the band's values.
    """
    _check_shapes(q, k, v)
    b, nh, ho, wo, d = q.shape
    h, w = k.shape[2:4]
    c = v.shape[1]
    row_index, row_valid = _axis_windows(ho, h, ratio, q.device)  # [Ho, Kh]
    col_index, col_valid = _axis_windows(wo, w, ratio, q.device)  # [Wo, Kw]
    kh, kw = row_index.shape[1], col_index.shape[1]
    q = q * (1.0 / math.sqrt(d))
    v_rows = v.permute(0, 2, 3, 1)  # [B, h, w, C]
    out = q.new_empty(b, ho, wo, c)
    step = rows_per_chunk((ho, wo), kh, w, b * nh, max_pixels_per_chunk)
    for i0 in range(0, ho, step):
        i1 = min(ho, i0 + step)
        rows = row_index[i0:i1]  # [n, Kh]
        n = i1 - i0
        k_band = k[:, :, rows]  # [B, nH, n, Kh, w, d]
        scores = q[:, :, i0:i1] @ k_band.reshape(b, nh, n, kh * w, d).transpose(-1, -2)  # [B,nH,n,Wo,Kh*w]
        scores = scores.view(b, nh, n, wo, kh, w)
        gather_index = col_index[None, None, None, :, None, :].expand(b, nh, n, wo, kh, kw)
        window = scores.gather(-1, gather_index)  # [B, nH, n, Wo, Kh, Kw]
        valid = row_valid[i0:i1, None, :, None] & col_valid[None, :, None, :]  # [n, Wo, Kh, Kw]
        window = window.masked_fill(~valid, float("-inf"))
        probs = window.flatten(-2).softmax(dim=-1).mean(dim=1)  # [B, n, Wo, Kh*Kw]
        band_probs = probs.new_zeros(b, n, wo, kh, w)
        band_probs.scatter_add_(-1, gather_index[:, 0], probs.view(b, n, wo, kh, kw))
        v_band = v_rows[:, rows].reshape(b, n, kh * w, c)  # [B, n, Kh*w, C]
        out[:, i0:i1] = band_probs.view(b, n, wo, kh * w) @ v_band
    return out.permute(0, 3, 1, 2)


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
