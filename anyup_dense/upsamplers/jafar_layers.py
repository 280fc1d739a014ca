"""Building blocks of JAFAR with the official parameter names, and its global attention.

* :class:`ResBlock`: ``x + conv2(SiLU(norm2(conv1(SiLU(norm1(x))))))``, 1x1 convs, affine
  GroupNorm(8); keys ``norm1, conv1, norm2, conv2``.
* :func:`encoder`: ``Sequential(first conv, ResBlock, ResBlock)`` (keys ``0, 1, 2``).
* :class:`SFT`: ``gamma(c) * GroupNorm(x) + beta(c)`` (affine-free GroupNorm, 1x1 convs).
* :func:`global_attention`: every output pixel attends to every feature pixel; the
  per-head softmax probabilities are averaged over heads and applied to the raw values.
  The default path works on chunks of output pixels in forward and backward (the backward
  recomputes each chunk's probabilities), so memory is bounded by the chunk, not by
  ``heads x Ho*Wo x h*w`` as in the official dense path, which is kept as ``dense=True``.
"""
from typing import Optional

import torch
import torch.nn as nn

from anyup_dense.ops.chunking import check_chunk_size

GROUPS = 8

# Elements of the per-chunk logits/probabilities [B, heads, pixels, h*w]: 2**22 float32 =
# 16 MiB (two such buffers live at once), 1,024 pixels for 4 heads x 32x32 keys. Single-thread
# CPU, 160x160 -> 32x32 keys: 0.82 s vs 1.2-1.5 s dense, and 1.07 s with 4x larger chunks
# (buffers that stay in cache beat the dense path's 3 GB passes).
DEFAULT_CHUNK_ELEMENTS = 2 ** 22


class ResBlock(nn.Module):
    """[B, D, H, W] -> [B, D, H, W]; GroupNorm statistics over the whole map."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(GROUPS, dim)
        self.conv1 = nn.Conv2d(dim, dim, 1, bias=False)
        self.norm2 = nn.GroupNorm(GROUPS, dim)
        self.conv2 = nn.Conv2d(dim, dim, 1, bias=False)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.norm2(self.conv1(self.act(self.norm1(x))))))


def encoder(in_channels: int, dim: int, kernel_size: int = 1) -> nn.Sequential:
    """[B, in_channels, H, W] -> [B, dim, H, W]: a bias-free conv (reflect padding
    ``kernel_size // 2``), then two :class:`ResBlock`."""
    first = nn.Conv2d(in_channels, dim, kernel_size, padding=kernel_size // 2, padding_mode="reflect", bias=False)
    return nn.Sequential(first, ResBlock(dim), ResBlock(dim))


class SFT(nn.Module):
    """Spatial feature transform: x [B,D,h,w], condition [B,D,h,w] -> [B,D,h,w]."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Conv2d(dim, dim, 1, bias=False)
        self.beta = nn.Conv2d(dim, dim, 1, bias=False)
        self.norm = nn.GroupNorm(GROUPS, dim, affine=False)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        return self.gamma(condition) * self.norm(x) + self.beta(condition)


def head_probabilities(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Per-head softmax over the keys: q [B,nH,n,d] (already scaled), k [B,nH,N,d] -> [B,nH,n,N]."""
    return (q @ k.transpose(-1, -2)).softmax(dim=-1)


def pixels_per_chunk(q: torch.Tensor, k: torch.Tensor, max_pixels_per_chunk: Optional[int]) -> int:
    """Output pixels per chunk: ``max_pixels_per_chunk`` if given, else as many as keep the
    chunk's logits within ``DEFAULT_CHUNK_ELEMENTS`` (at least one)."""
    max_pixels_per_chunk = check_chunk_size(max_pixels_per_chunk)
    if max_pixels_per_chunk is not None:
        return max_pixels_per_chunk
    b, nh, _, _ = q.shape
    return max(1, DEFAULT_CHUNK_ELEMENTS // (b * nh * k.shape[2]))


class _ChunkedAttention(torch.autograd.Function):
    """Forward chunk by chunk over output pixels; the backward recomputes each chunk's
    probabilities. Gradients, per chunk and head h (P_h the head probabilities, A their mean
    over the nH heads, G the output gradient [B,C,n]):
    dv = sum G A,  dA = G^T v,  dS_h = P_h (dA - sum_keys(P_h dA)) / nH,  dq_h = dS_h k_h,
    dk_h = sum dS_h^T q_h."""

    @staticmethod
    def forward(ctx, q, k, v, chunk):
        ctx.save_for_backward(q, k, v)
        ctx.chunk = chunk
        out = v.new_empty(v.shape[0], v.shape[1], q.shape[2])
        for start in range(0, q.shape[2], chunk):
            probs = head_probabilities(q[:, :, start:start + chunk], k).mean(dim=1)  # [B, n, N]
            out[:, :, start:start + chunk] = v @ probs.transpose(1, 2)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v = ctx.saved_tensors
        nh = q.shape[1]
        dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
        for start in range(0, q.shape[2], ctx.chunk):
            q_chunk = q[:, :, start:start + ctx.chunk]
            grad_chunk = grad_out[:, :, start:start + ctx.chunk]  # [B, C, n]
            probs = head_probabilities(q_chunk, k)  # [B, nH, n, N]
            dv += grad_chunk @ probs.mean(dim=1)
            d_probs = (grad_chunk.transpose(1, 2) @ v)[:, None]  # [B, 1, n, N]
            d_scores = probs * (d_probs - (probs * d_probs).sum(dim=-1, keepdim=True)) / nh
            dq[:, :, start:start + ctx.chunk] = d_scores @ k
            dk += d_scores.transpose(-1, -2) @ q_chunk
        return dq, dk, dv, None


def global_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, max_pixels_per_chunk: Optional[int] = None,
                     dense: bool = False) -> torch.Tensor:
    """Head-averaged attention of every query to every key, applied to the values.

    q [B,nH,Nq,d] (already scaled by 1/sqrt(d)), k [B,nH,Nk,d], v [B,C,Nk] -> [B,C,Nq]:
    ``out[b, :, i] = sum_j mean_h softmax_j(q[b,h,i] . k[b,h,j]) v[b, :, j]``.

    ``dense=True`` is the official formula in one piece (logits [B,nH,Nq,Nk] in memory, plain
    autograd); otherwise ``max_pixels_per_chunk`` query pixels at a time (``None``: the
    ``DEFAULT_CHUNK_ELEMENTS`` budget) with the recomputing backward of :class:`_ChunkedAttention`.
    """
    if dense:
        return v @ head_probabilities(q, k).mean(dim=1).transpose(1, 2)
    # Under autocast q, k (projected) and v (the raw features) can differ in dtype; the
    # recomputing backward runs outside autocast, so it gets one common dtype.
    dtype = torch.promote_types(torch.promote_types(q.dtype, k.dtype), v.dtype)
    q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    return _ChunkedAttention.apply(q, k, v, pixels_per_chunk(q, k, max_pixels_per_chunk))
