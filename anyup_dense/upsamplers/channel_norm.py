"""FeatUp's ``ChannelNorm`` (also LoftUp's and FeatUp implicit's): ``nn.LayerNorm`` (eps 1e-5)
over the channels of each pixel, held as ``norm`` so that the official keys are ``norm.weight`` /
``norm.bias``."""
import torch
import torch.nn as nn


class ChannelNorm(nn.Module):
    """[B,C,H,W] -> [B,C,H,W], normalised over C at every pixel (affine)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
