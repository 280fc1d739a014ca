"""Dilated k x k neighbourhood attention with NATTEN's border rule, and NAF's cross-scale form.

NATTEN semantics (2-D, non-causal, stride 1) along an axis of length L, kernel k, dilation d:
query position i belongs to dilation group r = i mod d (G = ceil((L - r) / d) members) and
attends to the k group members

    s = clamp(i div d - (k - 1) // 2, 0, G - k),   N(i) = {(s + t) * d + r : t = 0 .. k-1}

so border windows are *shifted* inside the map (never truncated or padded) and always hold k
positions; this needs k * d <= L. The 2-D neighbourhood is N_h(i) x N_w(j), entry a * k + c.

NAF attends from an (Ho, Wo) query grid to keys and values that were enlarged from (h, w) to
(Ho, Wo) by nearest-exact resizing, with d = (Ho // h, Wo // w). Enlarged position p holds the
low-resolution cell nn(p), so neighbour t of row i is the low-res row nn(N_h(i)[t]): the
enlarged maps are never built. A low-res row can appear twice in one window; both copies enter
the softmax, as in NATTEN.

:func:`gathered_attention` computes this for any per-axis neighbour tables. Query rows (and
columns) with identical neighbour tuples are batched into blocks, so one block of output
pixels shares one k x k set of keys: scores are a batched ``[pixels, d] @ [d, k*k]`` matmul.
Blocks are processed in chunks, and the backward pass recomputes each chunk's probabilities,
so neither pass holds more than one chunk of scores or gathered keys/values.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from anyup_dense.ops.mixed_precision import accumulation_dtype, autocast_off, common_dtype
from anyup_dense.ops.chunking import tiles_per_chunk

# Elements of the largest per-chunk buffer (scores [B, nH, blocks, pixels, k*k] or gathered
# keys/values/queries); 2**22 float32 = 16 MiB. The backward holds about eight such buffers.
DEFAULT_CHUNK_ELEMENTS = 2 ** 22


def natten_neighbors(length: int, kernel_size: int, dilation: int, device=None) -> torch.Tensor:
    """Neighbour positions [length, kernel_size] of every query along one axis (NATTEN rule)."""
    if kernel_size * dilation > length:
        raise ValueError(f"kernel_size * dilation ({kernel_size} * {dilation}) must not exceed the axis "
                         f"length {length}")
    i = torch.arange(length, device=device)
    residue, quotient = i % dilation, i // dilation
    group_size = (length - residue + dilation - 1) // dilation
    start = torch.minimum((quotient - (kernel_size - 1) // 2).clamp(min=0), group_size - kernel_size)
    return (start[:, None] + torch.arange(kernel_size, device=device)) * dilation + residue[:, None]


def nearest_exact_index(in_len: int, out_len: int, dtype: torch.dtype, device=None) -> torch.Tensor:
    """Source index [out_len] of ``F.interpolate(mode="nearest-exact")`` on a tensor of ``dtype``.

    torch evaluates min(floor((i + 0.5) * in / out), in - 1) in floating point, with a rounding
    path that depends on the dtype and device (float32 on CPU: floor(fl32((i + 0.5) *
    fl32(in / out)))); resizing an index ramp reproduces it exactly.
    """
    ramp = torch.arange(in_len, dtype=dtype, device=device).view(1, 1, in_len, 1)
    return F.interpolate(ramp, size=(out_len, 1), mode="nearest-exact").view(out_len).long()


def cross_scale_neighbors(in_len: int, out_len: int, kernel_size: int, dtype: torch.dtype,
                          device=None) -> torch.Tensor:
    """NAF's low-res neighbours [out_len, k] along one axis: nn(N(i)) with d = out // in."""
    if out_len < in_len:
        raise ValueError(f"output length {out_len} is smaller than the input length {in_len}")
    positions = natten_neighbors(out_len, kernel_size, out_len // in_len, device)
    return nearest_exact_index(in_len, out_len, dtype, device)[positions]


def _axis_blocks(neighbors: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Group the query positions of one axis by identical neighbour tuples.

    Groups larger than the median group size m are split into pieces of at most m, so every
    block holds m slots and padding stays small. Returns
      * ``tuples`` [N, k]: the shared neighbour tuple of each block;
      * ``members`` [N, m]: query positions of each block, padded with the block's first member;
      * ``valid`` [N, m]: False on the padding slots.
    """
    length = neighbors.shape[0]
    unique, inverse = torch.unique(neighbors, dim=0, return_inverse=True)
    counts = torch.bincount(inverse, minlength=unique.shape[0])
    size = int(counts.median())
    order = torch.argsort(inverse, stable=True)
    group = inverse[order]
    rank = torch.arange(length, device=neighbors.device) - (torch.cumsum(counts, 0) - counts)[group]
    pieces = (counts + size - 1) // size
    block = (torch.cumsum(pieces, 0) - pieces)[group] + rank // size
    members = torch.full((int(pieces.sum()), size), -1, dtype=torch.long, device=neighbors.device)
    members[block, rank % size] = order
    valid = members >= 0
    members = torch.where(valid, members, members[:, :1])
    tuples = unique[torch.repeat_interleave(torch.arange(unique.shape[0], device=neighbors.device), pieces)]
    return tuples, members, valid


class _Blocks:
    """Output blocks (row block x column block), their shared keys, and the chunks they run in."""

    def __init__(self, q: torch.Tensor, v: torch.Tensor, row_neighbors: torch.Tensor, col_neighbors: torch.Tensor,
                 max_pixels_per_chunk: Optional[int]):
        b, nh, _, _, dq = q.shape
        self.row_keys, self.row_members, row_valid = _axis_blocks(row_neighbors)
        self.col_keys, self.col_members, col_valid = _axis_blocks(col_neighbors)
        self.slot_valid = row_valid[:, None, :, None] & col_valid[None, :, None, :]  # [Nr, Nc, mr, mc]
        (nr, mr), (nc, mc) = self.row_members.shape, self.col_members.shape
        taps, width = row_neighbors.shape[1] * col_neighbors.shape[1], max(dq, v.shape[-1])
        per_block = b * nh * max(mr * mc * taps, taps * width, mr * mc * width)
        self.grid = (nr, nc)
        self.step = tiles_per_chunk(self.grid, mr * mc, per_block, max_pixels_per_chunk, DEFAULT_CHUNK_ELEMENTS)

    def chunks(self):
        """Per chunk: the query index pair (broadcasting to [n_r, n_c, mr, mc]), the key index
        pair (-> [n_r, n_c, k, k]) and the valid-slot mask [n_r, n_c, mr*mc, 1] (bool)."""
        (nr, nc), (step_r, step_c) = self.grid, self.step
        for r0 in range(0, nr, step_r):
            rows = slice(r0, min(nr, r0 + step_r))
            for c0 in range(0, nc, step_c):
                cols = slice(c0, min(nc, c0 + step_c))
                qpix = (self.row_members[rows][:, None, :, None], self.col_members[cols][None, :, None, :])
                kpix = (self.row_keys[rows][:, None, :, None], self.col_keys[cols][None, :, None, :])
                yield qpix, kpix, self.slot_valid[rows, cols].flatten(2)[..., None]


def _gather(x: torch.Tensor, pix) -> torch.Tensor:
    """[B, nH, H, W, D] at an index pair broadcasting to [n_r, n_c, p, q] -> [B, nH, n_r, n_c, p*q, D]."""
    return x[:, :, pix[0], pix[1]].flatten(4, 5)


def _flat(pix, width: int) -> torch.Tensor:
    """Flat pixel index r * width + c of an index pair, [n_r * n_c * p * q]."""
    return (pix[0] * width + pix[1]).reshape(-1)


def _pixel_rows(values: torch.Tensor) -> torch.Tensor:
    """[B, nH, n_r, n_c, P, D] -> [B, n_r * n_c * P, nH, D] (rows for a pixel-major buffer)."""
    b, nh, d = values.shape[0], values.shape[1], values.shape[-1]
    return values.permute(0, 2, 3, 4, 1, 5).reshape(b, -1, nh, d)


def _scatter_add(target: torch.Tensor, width: int, pix, values: torch.Tensor) -> None:
    """Pixel-major ``target`` [B, H*W, nH, D] += ``values`` [B, nH, n_r, n_c, P, D] at the
    pixels of ``pix`` (repeated pixels accumulate)."""
    target.index_add_(1, _flat(pix, width), _pixel_rows(values))


def _pixel_major(like: torch.Tensor, height: int, width: int, depth: int, spare: int = 0) -> torch.Tensor:
    """Zeros [B, H*W + spare, nH, D] (pixel-major, heads then channels innermost)."""
    return like.new_zeros(like.shape[0], height * width + spare, like.shape[1], depth)


def _as_heads(buffer: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pixel-major buffer [B, H*W, nH, D] -> the [B, nH, H, W, D] view."""
    b, _, nh, d = buffer.shape
    return buffer.view(b, height, width, nh, d).permute(0, 3, 1, 2, 4)


def _probs(q: torch.Tensor, k: torch.Tensor, qpix, kpix, scale: float) -> torch.Tensor:
    """Softmax over the taps of one chunk: [B, nH, n_r, n_c, mr*mc, k*k]."""
    scores = (_gather(q, qpix) @ _gather(k, kpix).transpose(-1, -2)) * scale
    return scores.softmax(dim=-1, dtype=accumulation_dtype(q)).to(q.dtype)


class _GatheredAttention(torch.autograd.Function):
    """Chunked forward; the backward recomputes each chunk's probabilities P. Per chunk, with
    dO the output gradient (zero on padding slots) and S = scale * q k^T:
    dV = P^T dO,  dP = dO V^T,  dS = P (dP - sum(P dP)),  dq = scale dS k,  dk = scale dS^T q."""

    @staticmethod
    def forward(ctx, q, k, v, row_neighbors, col_neighbors, scale, max_pixels_per_chunk):
        blocks = _Blocks(q, v, row_neighbors, col_neighbors, max_pixels_per_chunk)
        ctx.save_for_backward(q, k, v)
        ctx.blocks, ctx.scale = blocks, scale
        ho, wo = q.shape[2:4]
        out = _pixel_major(v, ho, wo, v.shape[-1], spare=1)  # padding slots land in the spare pixel
        for qpix, kpix, valid in blocks.chunks():
            probs = _probs(q, k, qpix, kpix, scale)
            target = torch.where(valid.reshape(-1), _flat(qpix, wo), ho * wo)
            out.index_add_(1, target, _pixel_rows(probs @ _gather(v, kpix)))
        return _as_heads(out[:, :ho * wo], ho, wo)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        saved = ctx.saved_tensors
        # dS = P (dP - sum(P dP)) cancels: the backward runs in float32 (or wider) whatever the
        # inputs' dtype (bf16 here gave 26% error on the encoder's gradients); results are cast back
        q, k, v = (t.to(accumulation_dtype(t)) for t in saved)
        grad_out = grad_out.to(v.dtype)
        blocks, scale = ctx.blocks, ctx.scale
        (ho, wo), (h, w) = q.shape[2:4], k.shape[2:4]
        dq = _pixel_major(q, ho, wo, q.shape[-1])
        dk = _pixel_major(k, h, w, k.shape[-1])
        dv = _pixel_major(v, h, w, v.shape[-1])
        for qpix, kpix, valid in blocks.chunks():
            probs = _probs(q, k, qpix, kpix, scale)
            d_out = _gather(grad_out, qpix) * valid  # padding slots carry no gradient
            _scatter_add(dv, w, kpix, probs.transpose(-1, -2) @ d_out)
            d_scores = d_out @ _gather(v, kpix).transpose(-1, -2)  # dP, turned into dS in place
            d_scores.sub_((probs * d_scores).sum(-1, keepdim=True)).mul_(probs).mul_(scale)
            _scatter_add(dq, wo, qpix, d_scores @ _gather(k, kpix))
            _scatter_add(dk, w, kpix, d_scores.transpose(-1, -2) @ _gather(q, qpix))
        return (*(_as_heads(g, *hw).to(t.dtype) for g, hw, t in zip((dq, dk, dv), ((ho, wo), (h, w), (h, w)), saved)),
                None, None, None, None)


def gathered_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, row_neighbors: torch.Tensor,
                       col_neighbors: torch.Tensor, scale: float,
                       max_pixels_per_chunk: Optional[int] = None) -> torch.Tensor:
    """Softmax attention of each query pixel over a separable set of key pixels.

    Query (i, j) attends to the keys (row_neighbors[i, a], col_neighbors[j, c]) for all
    (a, c), repeats included: ``softmax_ac(scale * <q[i, j], k[r_a, c_c]>)`` weights
    ``v[r_a, c_c]``.

    Args:
        q: [B, nH, Ho, Wo, dq] queries (any strides).
        k: [B, nH, h, w, dq] keys;  v: [B, nH, h, w, dv] values.
        row_neighbors: int64 [Ho, ka], key rows of each query row (values in [0, h)).
        col_neighbors: int64 [Wo, kb], key columns of each query column (values in [0, w)).
        scale: multiplies the dot products.
        max_pixels_per_chunk: bound on the output pixels processed at once (default: chunks
            of about ``DEFAULT_CHUNK_ELEMENTS`` buffer entries).
    Returns:
        [B, nH, Ho, Wo, dv], a view of a pixel-major [B, Ho, Wo, nH, dv] buffer. Differentiable
        in q, k and v (once), with the backward recomputing each chunk. Mixed dtypes follow
        :mod:`anyup_dense.ops.mixed_precision` (q/k's dtype, float32 softmax and sums).
    """
    if q.dim() != 5 or k.dim() != 5 or v.dim() != 5 or q.shape[:2] != k.shape[:2] or k.shape[:4] != v.shape[:4] \
            or q.shape[-1] != k.shape[-1]:
        raise ValueError(f"expected q [B,nH,Ho,Wo,d], k [B,nH,h,w,d], v [B,nH,h,w,dv]; got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    (ho, wo), (h, w) = q.shape[2:4], k.shape[2:4]
    for name, table, length, bound in (("row_neighbors", row_neighbors, ho, h),
                                       ("col_neighbors", col_neighbors, wo, w)):
        if table.dim() != 2 or table.shape[0] != length or table.min() < 0 or table.max() >= bound:
            raise ValueError(f"{name} must be [{length}, taps] with values in [0, {bound}), got shape "
                             f"{tuple(table.shape)}")
    q, k, v = common_dtype(q, k, v)
    with autocast_off(q.device):
        return _GatheredAttention.apply(q, k, v, row_neighbors.to(q.device), col_neighbors.to(q.device), scale,
                                        max_pixels_per_chunk)


def cross_scale_neighborhood_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel_size: int,
                                       scale: Optional[float] = None,
                                       max_pixels_per_chunk: Optional[int] = None) -> torch.Tensor:
    """NAF's attention: NATTEN's dilated k x k neighbourhood attention (dilation (Ho // h, Wo // w))
    from an (Ho, Wo) query grid to keys and values nearest-exact enlarged from (h, w).

    Args:
        q: [B, nH, Ho, Wo, d];  k: [B, nH, h, w, d];  v: [B, nH, h, w, dv] (Ho >= h, Wo >= w).
        kernel_size: odd k; needs k * (Ho // h) <= Ho and k * (Wo // w) <= Wo.
        scale: multiplies the dot products (default d ** -0.5).
    Returns:
        [B, nH, Ho, Wo, dv]; the nearest-exact indices follow torch's rounding for q's dtype and device.
    """
    (ho, wo), (h, w) = q.shape[2:4], k.shape[2:4]
    rows = cross_scale_neighbors(h, ho, kernel_size, q.dtype, q.device)
    cols = cross_scale_neighbors(w, wo, kernel_size, q.dtype, q.device)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    return gathered_attention(q, k, v, rows, cols, scale, max_pixels_per_chunk)
