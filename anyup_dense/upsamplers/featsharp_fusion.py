"""FeatSharp's fusion block: one pre-norm transformer block of width 2D over [JBU, tiles].

Tokens are kept as a [B, N, N, C2] grid (C2 = 2D, channels ``[jbu, tiles + tile_pos]``):

    x = x + ls1 * attn(norm1(x))          windowed ALiBi attention, [B,N,N,C2]
    y = ls2 * swiglu(norm2(x))            [B,N,N,D]
    out = x[..., :D] + y                  the residual keeps only the JBU half

A block with zero LayerScales returns the JBU branch exactly. ``no_ln`` replaces both
LayerNorms by the identity (no ``norm1``/``norm2`` parameters).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from anyup_dense.ops.neighborhood_attention import neighborhood_attention

LAYER_SCALE_INIT = 1e-6


def next_power_of_two(n: int) -> int:
    return 1 << (n - 1).bit_length()


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """Slope of head h: 2^-(floor(h/2) + 1) -> [1/2, 1/2, 1/4, 1/4, ...], float64 [num_heads]."""
    return torch.tensor([2.0 ** -(h // 2 + 1) for h in range(num_heads)], dtype=torch.float64)


class WindowAlibiAttention(nn.Module):
    """Multi-head window attention with a 1-D distance penalty per head.

    Even heads are penalised by the row distance, odd heads by the column distance (slopes from
    :func:`alibi_slopes`). The per-head dim is padded to a power of two inside ``qkv`` (all padded
    dims enter q.k) while the softmax scale uses the real head dim; each head's output is cut back
    to the real dim before ``proj``.
    """

    def __init__(self, dim: int, num_heads: int = 16, window_size: int = 7):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"fusion width {dim} (2 x feature dim) must be divisible by num_heads={num_heads}")
        if window_size % 2 == 0:
            raise ValueError(f"window_size must be odd, got {window_size}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.padded_head_dim = next_power_of_two(self.head_dim)
        self.radius = window_size // 2
        self.qkv = nn.Linear(dim, 3 * num_heads * self.padded_head_dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        slopes = alibi_slopes(num_heads)
        self.register_buffer("row_slopes", slopes * (torch.arange(num_heads) % 2 == 0), persistent=False)
        self.register_buffer("col_slopes", slopes * (torch.arange(num_heads) % 2 == 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, H, W, C2] -> [B, H, W, C2]."""
        b, h, w, _ = x.shape
        qkv = self.qkv(x).view(b, h, w, 3, self.num_heads, self.padded_head_dim).permute(3, 0, 4, 1, 2, 5)
        q, k, v = qkv[0], qkv[1], qkv[2][..., :self.head_dim]  # [B, nH, H, W, d]
        out = neighborhood_attention(q, k, v, self.radius, self.head_dim ** -0.5,
                                     self.row_slopes.to(x.dtype), self.col_slopes.to(x.dtype))
        return self.proj(out.permute(0, 2, 3, 1, 4).reshape(b, h, w, self.num_heads * self.head_dim))


class SwiGLU(nn.Module):
    """``w3(silu(x1) * x2)`` with ``[x1, x2] = w12(x)``; hidden = round_up_8(floor(8 * dim / 3))."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        hidden = ((8 * dim) // 3 + 7) // 8 * 8
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(x1) * x2)


class LayerScale(nn.Module):
    """x [..., dim] * gamma [dim] (key ``gamma``, init ``LAYER_SCALE_INIT``): ``timm.layers.LayerScale``
    (non-inplace), written here because the upsamplers import with torch alone; tests/test_shared_parts.py
    checks the key and the numbers against timm's."""

    def __init__(self, dim: int, init_value: float = LAYER_SCALE_INIT):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init_value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class FusionBlock(nn.Module):
    """The block above for feature dim ``dim`` (width 2 * dim)."""

    def __init__(self, dim: int, num_heads: int = 16, window_size: int = 7, no_ln: bool = False):
        super().__init__()
        width = 2 * dim
        self.dim = dim
        self.norm1 = nn.Identity() if no_ln else nn.LayerNorm(width)
        self.attn = WindowAlibiAttention(width, num_heads, window_size)
        self.ls1 = LayerScale(width)
        self.norm2 = nn.Identity() if no_ln else nn.LayerNorm(width)
        self.mlp = SwiGLU(width, dim)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, H, W, 2D] -> [B, H, W, D]."""
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x[..., :self.dim] + self.ls2(self.mlp(self.norm2(x)))
