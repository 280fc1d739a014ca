"""The frozen backbone as a feature function: images in [0, 1] -> last patch-token map.

It is deliberately not an ``nn.Module`` attribute of the recipes: the backbone has no
trainable parameters, must not be wrapped by DistributedDataParallel, and is not part of
any checkpoint.
"""
import torch

from anyup_dense.backbones import TimmViT
from anyup_dense.freezing import freeze
from anyup_dense.imaging import normalize


class FrozenBackbone:
    """Runs a frozen :class:`TimmViT` in eval mode under ``no_grad``.

    ``__call__(images [B,3,H,W] in [0,1], not normalised)`` -> float32 [B, C, H/p, W/p]
    (last block, final norm); it normalises the images with the backbone's own mean/std.
    (Not an upsampler :data:`~anyup_dense.upsamplers.base.Featurizer`, which takes
    ImageNet-normalised crops.) Already normalised images go through :meth:`from_normalized`.
    """

    def __init__(self, backbone: TimmViT, device: torch.device):
        self.backbone = freeze(backbone.to(device))
        self.patch_size = backbone.patch_size
        self.dim = backbone.embed_dim
        self.mean, self.std = backbone.mean, backbone.std

    @torch.no_grad()
    def from_normalized(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)[-1].float()

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.from_normalized(normalize(images, self.mean, self.std))
