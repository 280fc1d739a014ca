"""PCA colouring of feature maps, the usual way to look at upsampled features.

One PCA basis (3 components) is fitted on a reference map and applied to every map, so
colours are comparable across low-res, bilinear and learned upsampling.
"""
from typing import List, Sequence

import numpy as np
import torch
import torch.nn.functional as F


class FeaturePCA:
    """Fit on [C, h, w] features; ``colour(map [C,H,W]) -> uint8 [H, W, 3]``."""

    def __init__(self, reference: torch.Tensor, components: int = 3):
        pixels = reference.detach().double().flatten(1).T  # [N, C]
        self.mean = pixels.mean(dim=0, keepdim=True)
        _, _, v = torch.linalg.svd(pixels - self.mean, full_matrices=False)
        self.basis = v[:components].T  # [C, 3]
        projected = (pixels - self.mean) @ self.basis
        self.low = projected.quantile(0.01, dim=0)
        self.high = projected.quantile(0.99, dim=0)

    def colour(self, features: torch.Tensor) -> np.ndarray:
        c, h, w = features.shape
        projected = (features.detach().double().flatten(1).T - self.mean) @ self.basis
        scaled = ((projected - self.low) / (self.high - self.low).clamp_min(1e-12)).clamp(0, 1)
        return (scaled.reshape(h, w, -1).numpy() * 255).round().astype(np.uint8)


def side_by_side(panels: Sequence[np.ndarray], size: int, gap: int = 4) -> np.ndarray:
    """Resize each uint8 [H, W, 3] panel to size x size (nearest) and join them horizontally."""
    resized: List[np.ndarray] = []
    for panel in panels:
        t = torch.from_numpy(np.ascontiguousarray(panel)).permute(2, 0, 1)[None].float()
        t = F.interpolate(t, size=(size, size), mode="nearest")
        resized.append(t[0].permute(1, 2, 0).byte().numpy())
    spacer = np.full((size, gap, 3), 255, dtype=np.uint8)
    joined = [resized[0]]
    for panel in resized[1:]:
        joined += [spacer, panel]
    return np.concatenate(joined, axis=1)
