"""What an upsampler neck needs besides the features: the guidance image in ImageNet
normalisation, and (for FeatSharp) a featurizer that runs the backbone on image crops."""
from typing import Callable, Optional, Sequence

import torch
import torch.nn as nn

from anyup_dense.backbones import IMAGENET_MEAN, IMAGENET_STD

# mmseg's usual SegDataPreProcessor values: ImageNet statistics on the 0-255 scale.
MMSEG_IMAGENET_NORM = dict(mean=[255 * m for m in IMAGENET_MEAN], std=[255 * s for s in IMAGENET_STD])


class ToImageNet(nn.Module):
    """Maps an image normalised as ``(x - mean) / std`` (the data preprocessor's ``mean``/
    ``std``, RGB order, 0-255 scale) to ImageNet normalisation (0-1 scale):
    ``[B,3,H,W] -> [B,3,H,W]``, an affine map per channel."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"image_norm needs 3 mean and 3 std values (RGB), got mean={mean}, std={std}")
        mean, std = torch.tensor(mean, dtype=torch.float64), torch.tensor(std, dtype=torch.float64)
        in_mean, in_std = torch.tensor(IMAGENET_MEAN, dtype=torch.float64), torch.tensor(IMAGENET_STD,
                                                                                        dtype=torch.float64)
        scale = std / 255.0 / in_std
        shift = (mean / 255.0 - in_mean) / in_std
        self.register_buffer("scale", scale.float().view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", shift.float().view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return image * self.scale.to(image.dtype) + self.shift.to(image.dtype)


def backbone_featurizer(backbone: nn.Module, in_index: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """A FeatSharp featurizer from an mmseg backbone: crops [N,3,R,R] in ImageNet
    normalisation -> the backbone's map ``in_index`` [N,D,R/p,R/p]. Crops are re-normalised
    with the backbone's recorded ``mean``/``std`` (ImageNet when it records none)."""
    mean = torch.tensor(getattr(backbone, "mean", IMAGENET_MEAN)).view(1, 3, 1, 1)
    std = torch.tensor(getattr(backbone, "std", IMAGENET_STD)).view(1, 3, 1, 1)
    in_mean, in_std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def featurizer(crops: torch.Tensor) -> torch.Tensor:
        def on(t: torch.Tensor) -> torch.Tensor:
            return t.to(device=crops.device, dtype=crops.dtype)

        rgb = crops * on(in_std) + on(in_mean)
        return backbone((rgb - on(mean)) / on(std))[in_index]

    return featurizer


def image_norm_module(image_norm: Optional[dict]) -> ToImageNet:
    """``image_norm=None`` means mmseg's usual ImageNet preprocessor values."""
    norm = MMSEG_IMAGENET_NORM if image_norm is None else image_norm
    unknown = set(norm) - {"mean", "std"}
    if unknown:
        raise ValueError(f"image_norm accepts only 'mean' and 'std', got extra keys {sorted(unknown)}")
    return ToImageNet(norm["mean"], norm["std"])
