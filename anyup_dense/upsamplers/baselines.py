"""Training-free baselines: bilinear and bicubic interpolation of the feature map.

They ignore the image except for its size, and accept any C, dtype and output size.
"""
from typing import Tuple

import torch
import torch.nn.functional as F

from anyup_dense.registry import UPSAMPLERS
from anyup_dense.upsamplers.base import Upsampler


class InterpolationUpsampler(Upsampler):
    """``F.interpolate(features, output_size, mode, align_corners=False)``."""

    def __init__(self, mode: str, check_finite: bool = False):
        super().__init__(check_finite=check_finite)
        if mode not in ("bilinear", "bicubic", "nearest"):
            raise ValueError(f"mode must be 'bilinear', 'bicubic' or 'nearest', got {mode!r}")
        self.mode = mode

    def upsample(self, features: torch.Tensor, image: torch.Tensor, output_size: Tuple[int, int]) -> torch.Tensor:
        align = None if self.mode == "nearest" else False
        return F.interpolate(features, size=output_size, mode=self.mode, align_corners=align)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


def _build(mode: str, pretrained=None, **kwargs) -> InterpolationUpsampler:
    """``pretrained`` is accepted so configs can switch upsamplers by ``type`` alone; these
    baselines have no weights, so it must be ``None``."""
    if pretrained is not None:
        raise ValueError(f"the {mode} upsampler has no weights; pretrained must be None, got {pretrained!r}")
    return InterpolationUpsampler(mode, **kwargs)


@UPSAMPLERS.register("bilinear")
def build_bilinear(**kwargs) -> InterpolationUpsampler:
    return _build("bilinear", **kwargs)


@UPSAMPLERS.register("bicubic")
def build_bicubic(**kwargs) -> InterpolationUpsampler:
    return _build("bicubic", **kwargs)
