"""Label-free quality figure: feature-space preservation.

An upsampler should add resolution, not change what the features say. Its output, averaged
back over each low-resolution cell, should therefore reproduce the input features:

    preservation(U, F) = mean over b, i, j of cos(area(U)[b, :, i, j], F[b, :, i, j])

with ``F`` [B,C,h,w] the input features, ``U`` [B,C,H,W] the upsampled ones and ``area`` the
area (cell-average) downsampling to h x w (``adaptive_avg_pool2d``: the exact mean of each
cell when H, W are multiples of h, w). 1.0 is perfect preservation (e.g. nearest-neighbour
upsampling by an integer factor), 0 means unrelated directions. This is the label-free
counterpart of AnyUp's feature-space-preservation protocol (AnyUp Tab. 5), where probes
trained on the low-resolution features are applied to the upsampled ones.
"""
import torch
import torch.nn.functional as F


def feature_preservation(upsampled: torch.Tensor, features: torch.Tensor, eps: float = 1e-8) -> float:
    """Mean cosine similarity between ``upsampled`` [B,C,H,W] area-downsampled to the grid of
    ``features`` [B,C,h,w] and ``features`` itself (computed in float64); see the module doc."""
    for name, tensor in (("upsampled", upsampled), ("features", features)):
        if not isinstance(tensor, torch.Tensor) or tensor.dim() != 4:
            raise ValueError(f"{name} must be a 4-D tensor [B, C, H, W], got "
                             f"{tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__}")
    if upsampled.shape[:2] != features.shape[:2]:
        raise ValueError(f"upsampled [B, C, H, W] must have the batch and channels of features "
                         f"{tuple(features.shape)}, got {tuple(upsampled.shape)}")
    if upsampled.shape[-2] < features.shape[-2] or upsampled.shape[-1] < features.shape[-1]:
        raise ValueError(f"upsampled must be at least the feature grid {tuple(features.shape[-2:])}, "
                         f"got {tuple(upsampled.shape[-2:])}")
    pooled = F.adaptive_avg_pool2d(upsampled.detach().double(), features.shape[-2:])
    return F.cosine_similarity(pooled, features.detach().double(), dim=1, eps=eps).mean().item()
