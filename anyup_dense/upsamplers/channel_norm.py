"""The NCHW LayerNorm of the upsamplers: each pixel normalised over its C channels.

:class:`LayerNorm2d` is ``timm.layers.LayerNorm2d`` (same ``weight``/``bias`` keys, same eps
default 1e-6, same ``F.layer_norm`` on the channels-last view; tests/test_shared_parts.py checks
keys and numbers). It is written here because the upsamplers import with torch alone
(tests/test_package_layering.py); the integrations, which need timm anyway, use timm's.

:class:`ChannelNorm` is FeatUp's (also LoftUp's and FeatUp implicit's) layer of the same name:
eps 1e-5 and its parameters under ``norm.``, as in the official checkpoints.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class LayerNorm2d(nn.LayerNorm):
    """[B,C,H,W] -> [B,C,H,W], normalised over C at every pixel (biased variance), affine."""

    def __init__(self, num_channels: int, eps: float = 1e-6):
        super().__init__(num_channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ChannelNorm(nn.Module):
    """FeatUp's ``ChannelNorm``: :class:`LayerNorm2d` with eps 1e-5, held as ``norm`` (official keys
    ``norm.weight`` / ``norm.bias``). [B,C,H,W] -> [B,C,H,W]."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = LayerNorm2d(dim, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)
