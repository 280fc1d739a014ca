"""Building blocks of NAF, with the official parameter names (``image_encoder.*``).

* :class:`EncBlock`: GN -> SiLU -> conv -> GN -> SiLU -> conv, **no** residual (keys
  ``norm1``, ``conv1``, ``norm2``, ``conv2``).
* :func:`encoder_branch`: stem conv (3 -> width) then ``img_layers`` EncBlocks; 1x1 kernels for
  ``encoder``, 3x3 with reflect padding for ``sem_encoder``.
* :class:`AxialRoPE`: the rotary position embedding NAF took from DINOv3 (buffer ``periods``).
* :class:`ImageEncoder`: both branches, pooled to the output grid, then the RoPE.
"""
import math
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

GROUPS = 8


def _conv(cin: int, cout: int, kernel_size: int) -> nn.Conv2d:
    """Conv with bias; reflect padding keeps the size for kernels > 1 (1x1 convs get no padding
    mode: torch would otherwise copy the input through a zero-width reflect pad)."""
    mode = "reflect" if kernel_size > 1 else "zeros"
    return nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2, padding_mode=mode)


class EncBlock(nn.Module):
    """[B, c, H, W] -> [B, c, H, W]: conv2(SiLU(GN2(conv1(SiLU(GN1(x)))))), GroupNorm(8, eps 1e-5)."""

    def __init__(self, channels: int, kernel_size: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(GROUPS, channels)
        self.conv1 = _conv(channels, channels, kernel_size)
        self.norm2 = nn.GroupNorm(GROUPS, channels)
        self.conv2 = _conv(channels, channels, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.silu(self.norm2(self.conv1(F.silu(self.norm1(x))))))


def encoder_branch(width: int, kernel_size: int, layers: int) -> nn.Sequential:
    """[B, 3, H, W] -> [B, width, H, W]; keys ``0.*`` (stem) and ``1..layers.*`` (EncBlocks)."""
    return nn.Sequential(_conv(3, width, kernel_size), *(EncBlock(width, kernel_size) for _ in range(layers)))


class AxialRoPE(nn.Module):
    """Axial rotary embedding over ``heads`` groups of D = dim / heads channels (c = g * D + t).

    Pixel (i, j) of an (H, W) grid has coordinates y = 2 (i + 0.5) / H - 1, x = 2 (j + 0.5) / W - 1
    (built in the input's dtype); angles a[m] = 2 pi y / P[m], a[D/4 + m] = 2 pi x / P[m] for the
    D/4 ``periods`` P. Channel t < D/2 is rotated with channel t + D/2 by a[t]:
    (u_t, u_{t+D/2}) -> (u_t cos - u_{t+D/2} sin, u_{t+D/2} cos + u_t sin).
    In training mode, with ``rescale`` r > 1, both coordinates are multiplied by one factor
    drawn log-uniformly from [1/r, r] per call (augmentation; eval mode has none).
    ``periods`` is a buffer: checkpoints store it and its stored values are the ones used.
    """

    def __init__(self, dim: int, heads: int, base: float, rescale: float):
        super().__init__()
        self.heads, self.rescale = heads, rescale
        head_dim = dim // heads
        exponent = 2 * torch.arange(head_dim // 4, dtype=torch.float32) / (head_dim // 2)
        self.register_buffer("periods", base ** exponent)

    def angles(self, size: Tuple[int, int], dtype: torch.dtype, device) -> Tuple[torch.Tensor, torch.Tensor]:
        """Row angles [D/4, H, 1] and column angles [D/4, 1, W]."""
        coords = [2.0 * (torch.arange(0.5, n, dtype=dtype, device=device) / n) - 1.0 for n in size]
        if self.training and self.rescale is not None and self.rescale > 1:
            bound = math.log(self.rescale)
            factor = torch.empty(1, dtype=dtype, device=device).uniform_(-bound, bound).exp()
            coords = [c * factor for c in coords]
        periods = self.periods.to(dtype)[:, None]
        rows, cols = (2 * math.pi * c[None, :] / periods for c in coords)
        return rows[:, :, None], cols[:, None, :]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, dim, H, W] -> [B, dim, H, W]; fastest for channels-last ``x`` (the output keeps
        ``x``'s memory format)."""
        h, w = x.shape[-2:]
        rows, cols = self.angles((h, w), x.dtype, x.device)
        # cos / sin as [H, W, D/2]: channel-innermost, like channels-last x viewed as [B, H, W, dim].
        cos, sin = (torch.cat([f(rows).expand(-1, h, w), f(cols).expand(-1, h, w)]).permute(1, 2, 0).contiguous()
                    for f in (torch.cos, torch.sin))
        half = cos.shape[-1]
        out = torch.empty_like(x)
        pixels, out_pixels = x.permute(0, 2, 3, 1), out.permute(0, 2, 3, 1)
        for g in range(self.heads):  # one group at a time keeps the temporaries small
            first, second = slice(2 * g * half, (2 * g + 1) * half), slice((2 * g + 1) * half, (2 * g + 2) * half)
            out_pixels[..., first] = pixels[..., first] * cos - pixels[..., second] * sin
            out_pixels[..., second] = pixels[..., second] * cos + pixels[..., first] * sin
        return out


class ImageEncoder(nn.Module):
    """Image -> RoPE-rotated queries on the output grid.

    E = concat[encoder(image), sem_encoder(image)] [B, dim, H, W];
    Q = rope(adaptive_avg_pool(E, (Ho, Wo))) [B, dim, Ho, Wo]. Pooling acts per channel, so each
    branch is pooled as soon as it is computed and its full-resolution output freed.
    With ``checkpoint_layers`` (set by ``NAF(checkpoint_encoder=True)``) each conv / EncBlock is
    recomputed in the backward pass instead of keeping its full-resolution activations.
    """

    def __init__(self, dim: int, heads_rope: int, rope_base: float, rope_rescale: float, img_layers: int):
        super().__init__()
        self.encoder = encoder_branch(dim // 2, 1, img_layers)
        self.sem_encoder = encoder_branch(dim // 2, 3, img_layers)
        self.rope = AxialRoPE(dim, heads_rope, rope_base, rope_rescale)
        self.checkpoint_layers = False

    def run_branch(self, branch: nn.Sequential, image: torch.Tensor) -> torch.Tensor:
        """One branch [B, 3, H, W] -> [B, dim/2, H, W]."""
        x = image
        for layer in branch:
            if self.checkpoint_layers and torch.is_grad_enabled():
                x = checkpoint(layer, x, use_reentrant=False)
            else:
                x = layer(x)
        return x

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """E [B, dim, H, W] (the official ``encoding`` intermediate)."""
        return torch.cat([self.run_branch(branch, image) for branch in (self.encoder, self.sem_encoder)], dim=1)

    def forward(self, image: torch.Tensor, output_size: Tuple[int, int]) -> torch.Tensor:
        pooled = torch.cat([F.adaptive_avg_pool2d(self.run_branch(branch, image), output_size)
                            for branch in (self.encoder, self.sem_encoder)], dim=1)
        return self.rope(pooled)
