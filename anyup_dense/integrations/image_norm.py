"""Re-normalise an image batch for the ViT and for the upsampler's guidance (framework-free;
shared by the MMSegmentation and Detectron2 integrations).

Frameworks hand the model ``(pixels - mean) / std`` with pixels in 0..255 (Detectron2 also
in ``INPUT.FORMAT`` channel order, ``"BGR"`` by default). The ViT wants RGB in 0..1
normalised with its own mean/std, and every upsampler wants ImageNet-normalised RGB. Each
conversion is one per-channel affine map (plus a channel flip), applied by
:class:`Renormalize`.
"""
from typing import Sequence

import torch
import torch.nn as nn

CHANNEL_ORDERS = ("RGB", "BGR")


class Renormalize(nn.Module):
    """x [B,3,H,W] normalised with ``(src_mean, src_std)`` -> normalised with ``(dst_mean, dst_std)``.

    Args:
        src_mean, src_std: the input's normalisation, in ``src_format`` channel order and in
            ``src_scale`` units (Detectron2: 0..255, so ``src_scale=255``).
        dst_mean, dst_std: the target normalisation of RGB values in 0..1.
        src_format: ``"RGB"`` or ``"BGR"``; BGR inputs are flipped to RGB.
        src_scale: the value of a full-intensity pixel in the input's units.
    The constants are non-persistent buffers: they follow ``.to()`` but stay out of checkpoints.
    """

    def __init__(self, src_mean: Sequence[float], src_std: Sequence[float], dst_mean: Sequence[float],
                 dst_std: Sequence[float], src_format: str = "RGB", src_scale: float = 1.0):
        super().__init__()
        if src_format not in CHANNEL_ORDERS:
            raise ValueError(f"src_format must be one of {CHANNEL_ORDERS}, got {src_format!r}")
        for name, values in (("src_mean", src_mean), ("src_std", src_std), ("dst_mean", dst_mean),
                             ("dst_std", dst_std)):
            if len(values) != 3:
                raise ValueError(f"{name} must have 3 values (one per channel), got {list(values)}")
        self.flip = src_format == "BGR"
        order = slice(None, None, -1) if self.flip else slice(None)
        mean = torch.tensor([float(v) for v in src_mean][order]) / src_scale
        std = torch.tensor([float(v) for v in src_std][order]) / src_scale
        dst_mean, dst_std = torch.tensor([float(v) for v in dst_mean]), torch.tensor([float(v) for v in dst_std])
        # y = (x * std + mean - dst_mean) / dst_std, per RGB channel
        self.register_buffer("scale", (std / dst_std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", ((mean - dst_mean) / dst_std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B,3,H,W] in the source normalisation -> [B,3,H,W] RGB in the target normalisation."""
        if self.flip:
            x = x.flip(1)
        return torch.addcmul(self.shift.to(x.dtype), x, self.scale.to(x.dtype))
