"""FeatSharp's JBU branch: one learned-range JBU level per prime factor of the upsampling factor.

Differs from FeatUp's stack (``featup_jbu.py``): no dropout, no kernel fix-up MLP, no final
1x1 conv, bilinear (not bicubic) source resize, and two extra scalars ``range_alpha`` /
``spatial_alpha`` that scale the range and spatial kernels by exp(alpha) before the
normalisation (so they cancel, apart from the 1e-7 clamp). The kernel math itself is shared
with FeatUp through ``anyup_dense.ops.jbu``.
"""
from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F

from anyup_dense.ops.jbu import (apply_jbu_kernel, normalize_kernel, range_kernel, spatial_kernel,
                                 taps_to_pixel_kernels)


def prime_factors(n: int) -> List[int]:
    """Ascending prime factors with multiplicity: 4 -> [2, 2], 14 -> [2, 7], 3 -> [3]."""
    if n < 2:
        raise ValueError(f"upsample_factor must be an integer >= 2, got {n}")
    factors, p = [], 2
    while n > 1:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1
    return factors


class FeatSharpJBULevel(nn.Module):
    """One JBU level; output size = guidance size (``factor`` x the source, set by the caller)."""

    def __init__(self, guidance_dim: int = 3, key_dim: int = 32, radius: int = 3):
        super().__init__()
        self.radius = radius
        self.range_temp = nn.Parameter(torch.tensor(0.0))
        self.sigma_spatial = nn.Parameter(torch.tensor(1.0))
        self.range_alpha = nn.Parameter(torch.tensor(0.0))
        self.spatial_alpha = nn.Parameter(torch.tensor(0.0))
        self.range_proj = nn.Sequential(nn.Conv2d(guidance_dim, key_dim, 1), nn.GELU(), nn.Conv2d(key_dim, key_dim, 1))

    def kernels(self, guidance: torch.Tensor) -> torch.Tensor:
        """guidance [B, 3, H, W] -> normalised per-pixel kernels [B, H, W, d, d]."""
        similarity = range_kernel(self.range_proj(guidance), self.range_temp, self.radius) * self.range_alpha.exp()
        distance = spatial_kernel(self.sigma_spatial, self.radius) * self.spatial_alpha.exp()
        return taps_to_pixel_kernels(normalize_kernel(similarity * distance))

    def forward(self, source: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        """source [B, C, h, w], guidance [B, 3, H, W] -> [B, C, H, W]."""
        return apply_jbu_kernel(source, self.kernels(guidance), mode="bilinear")


class FeatSharpJBU(nn.Module):
    """Levels for the prime factors of ``upsample_factor``; each pools the guidance to its output size."""

    def __init__(self, upsample_factor: int, guidance_dim: int = 3, key_dim: int = 32, radius: int = 3):
        super().__init__()
        self.factors = prime_factors(upsample_factor)
        self.levels = nn.ModuleList(FeatSharpJBULevel(guidance_dim, key_dim, radius) for _ in self.factors)

    def forward(self, source: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        """source [B, C, h, w], guidance [B, 3, u*h, u*w] (already resized) -> [B, C, u*h, u*w]."""
        x = source
        for factor, level in zip(self.factors, self.levels):
            x = level(x, F.adaptive_avg_pool2d(guidance, (factor * x.shape[-2], factor * x.shape[-1])))
        return x
