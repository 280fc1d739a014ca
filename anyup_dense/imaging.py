"""Image conventions shared by the upsamplers, the training code and the integrations (torch only).

* :data:`IMAGENET_MEAN` / :data:`IMAGENET_STD`: the guidance-image normalisation of every upsampler
  (RGB in 0..1).
* :func:`normalize` / :func:`denormalize`: RGB in 0..1 <-> ``(x - mean) / std``, in the image's dtype
  (exact arithmetic); :func:`imagenet_normalize`: the upsamplers' guidance.
* :class:`Renormalize`: one normalisation to another (e.g. a framework's 0..255 BGR to ImageNet RGB)
  as a single per-channel affine map (plus a channel flip).
* :func:`resize_center_crop`: shorter side to ``size``, then the centre ``size`` x ``size`` crop;
  :func:`center_crop_geometry` is its arithmetic, for callers that resize with another library.
"""
from typing import Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CHANNEL_ORDERS = ("RGB", "BGR")


def _per_channel(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    """3 values -> [1, 3, 1, 1] (or [3, 1, 1] for a [3, H, W] ``like``) in ``like``'s dtype and device."""
    shape = (3, 1, 1) if like.dim() == 3 else (1, 3, 1, 1)
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(shape)


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """RGB [B,3,H,W] or [3,H,W] in 0..1 -> ``(images - mean) / std``, computed in the images' dtype."""
    return (images - _per_channel(mean, images)) / _per_channel(std, images)


def imagenet_normalize(images: torch.Tensor) -> torch.Tensor:
    """The guidance-image convention of every upsampler: :func:`normalize` with ImageNet mean/std."""
    return normalize(images, IMAGENET_MEAN, IMAGENET_STD)


def denormalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """The inverse of :func:`normalize`: ``images * std + mean`` (RGB in 0..1 again), in the images' dtype."""
    return images * _per_channel(std, images) + _per_channel(mean, images)


class Renormalize(nn.Module):
    """x [B,3,H,W] normalised with ``(src_mean, src_std)`` -> normalised with ``(dst_mean, dst_std)``.

    Frameworks hand the model ``(pixels - mean) / std`` with pixels in 0..255 (Detectron2 also in
    ``INPUT.FORMAT`` channel order); the ViT and the upsamplers want RGB in 0..1 normalised with
    their own mean/std. Each such conversion is ``y = x * scale + shift`` per RGB channel.

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


def center_crop_geometry(height: int, width: int, size: int) -> Tuple[int, int, int, int]:
    """``(resized_height, resized_width, top, left)``: an image of ``height`` x ``width`` resized so
    that its shorter side is ``size`` (aspect kept, sides rounded, never below ``size``), and the
    top-left corner of the centre ``size`` x ``size`` crop of the resized image."""
    for name, value in (("height", height), ("width", width), ("size", size)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    scale = size / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    return new_h, new_w, (new_h - size) // 2, (new_w - size) // 2


def resize_center_crop(image: torch.Tensor, size: int, mode: str = "bilinear",
                       antialias: bool = True) -> torch.Tensor:
    """[3, H, W] uint8 (0..255) or float (0..1) -> float [3, size, size] in 0..1: the shorter side
    resized to ``size`` with ``F.interpolate(mode, antialias)`` (align_corners=False), then the
    centre crop (:func:`center_crop_geometry`), clamped to 0..1."""
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be [3, H, W], got shape {tuple(image.shape)}")
    if mode not in ("bilinear", "bicubic"):
        raise ValueError(f"mode must be 'bilinear' or 'bicubic', got {mode!r}")
    x = image.float().div(255) if image.dtype == torch.uint8 else image
    new_h, new_w, top, left = center_crop_geometry(int(x.shape[-2]), int(x.shape[-1]), size)
    x = F.interpolate(x[None], size=(new_h, new_w), mode=mode, antialias=antialias, align_corners=False)[0]
    return x[:, top:top + size, left:left + size].clamp(0, 1)
