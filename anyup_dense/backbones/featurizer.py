"""The featurizer an upsampler with ``requires_featurizer`` (FeatSharp, FeatUp implicit) calls: a
backbone run on ImageNet-normalised crops."""
import torch
import torch.nn as nn

from anyup_dense.imaging import IMAGENET_MEAN, IMAGENET_STD, Renormalize
from anyup_dense.upsamplers.base import Featurizer


def backbone_featurizer(backbone: nn.Module, out_index: int = -1) -> Featurizer:
    """Crops [N,3,R,R] in ImageNet normalisation -> the backbone's map ``out_index`` [N,D,R/p,R/p].

    ``backbone`` returns a sequence of maps (``TimmViT``, mmseg backbones); crops are re-normalised
    with its recorded ``mean``/``std`` (ImageNet when it records none)."""
    to_backbone = Renormalize(IMAGENET_MEAN, IMAGENET_STD, getattr(backbone, "mean", IMAGENET_MEAN),
                              getattr(backbone, "std", IMAGENET_STD))

    def featurizer(crops: torch.Tensor) -> torch.Tensor:
        return backbone(to_backbone.to(crops.device)(crops))[out_index]

    return featurizer
