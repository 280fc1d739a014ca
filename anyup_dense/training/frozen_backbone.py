"""The frozen backbone as a feature function: images in [0, 1] -> last patch-token map.

It is deliberately not an ``nn.Module`` attribute of the recipes: the backbone has no
trainable parameters, must not be wrapped by DistributedDataParallel, and is not part of
any checkpoint.
"""
import torch

from anyup_dense.backbones import IMAGENET_MEAN, IMAGENET_STD, TimmViT


def normalize(images: torch.Tensor, mean, std) -> torch.Tensor:
    """[B, 3, H, W] in [0, 1] -> (x - mean) / std."""
    m = torch.tensor(mean, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images - m) / s


def imagenet_normalize(images: torch.Tensor) -> torch.Tensor:
    """The guidance-image convention of every upsampler: ImageNet mean/std."""
    return normalize(images, IMAGENET_MEAN, IMAGENET_STD)


class Featurizer:
    """Runs a frozen :class:`TimmViT` in eval mode under ``no_grad``.

    ``__call__(images [B,3,H,W] in [0,1])`` -> [B, C, H/p, W/p] (last block, final norm),
    with the image normalised by the backbone's own mean/std. Also accepts already
    normalised images through :meth:`from_normalized`.
    """

    def __init__(self, backbone: TimmViT, device: torch.device):
        self.backbone = backbone.to(device).eval().requires_grad_(False)
        self.patch_size = backbone.patch_size
        self.dim = backbone.embed_dim
        self.mean, self.std = backbone.mean, backbone.std

    @torch.no_grad()
    def from_normalized(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)[-1].float()

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.from_normalized(normalize(images, self.mean, self.std))
