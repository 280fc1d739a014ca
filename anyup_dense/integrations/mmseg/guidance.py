"""What an upsampler neck needs besides the features: the guidance image in ImageNet
normalisation, and (for FeatSharp) a featurizer that runs the backbone on image crops."""
from typing import Callable, Optional, Sequence

import torch
import torch.nn as nn

from anyup_dense.backbones import IMAGENET_MEAN, IMAGENET_STD
from anyup_dense.integrations.image_norm import Renormalize

# mmseg's usual SegDataPreProcessor values: ImageNet statistics on the 0-255 scale.
MMSEG_IMAGENET_NORM = dict(mean=[255 * m for m in IMAGENET_MEAN], std=[255 * s for s in IMAGENET_STD])


class ToImageNet(Renormalize):
    """Maps an image normalised as ``(x - mean) / std`` (the data preprocessor's ``mean``/
    ``std``, RGB order, 0-255 scale) to ImageNet normalisation (0-1 scale):
    ``[B,3,H,W] -> [B,3,H,W]``, an affine map per channel."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__(mean, std, IMAGENET_MEAN, IMAGENET_STD, src_format="RGB", src_scale=255.0)


def backbone_featurizer(backbone: nn.Module, in_index: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """A FeatSharp featurizer from an mmseg backbone: crops [N,3,R,R] in ImageNet
    normalisation -> the backbone's map ``in_index`` [N,D,R/p,R/p]. Crops are re-normalised
    with the backbone's recorded ``mean``/``std`` (ImageNet when it records none)."""
    to_backbone = Renormalize(IMAGENET_MEAN, IMAGENET_STD, getattr(backbone, "mean", IMAGENET_MEAN),
                              getattr(backbone, "std", IMAGENET_STD))

    def featurizer(crops: torch.Tensor) -> torch.Tensor:
        return backbone(to_backbone.to(crops.device)(crops))[in_index]

    return featurizer


def image_norm_module(image_norm: Optional[dict]) -> ToImageNet:
    """``image_norm=None`` means mmseg's usual ImageNet preprocessor values."""
    norm = MMSEG_IMAGENET_NORM if image_norm is None else image_norm
    unknown = set(norm) - {"mean", "std"}
    if unknown:
        raise ValueError(f"image_norm accepts only 'mean' and 'std', got extra keys {sorted(unknown)}")
    if len(norm["mean"]) != 3 or len(norm["std"]) != 3:
        raise ValueError(f"image_norm needs 3 mean and 3 std values (RGB), got mean={norm['mean']}, std={norm['std']}")
    return ToImageNet(norm["mean"], norm["std"])
