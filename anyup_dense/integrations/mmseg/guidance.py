"""What an upsampler neck needs besides the features: the guidance image in ImageNet
normalisation (the featurizer of FeatSharp / FeatUp implicit is ``anyup_dense.backbones.featurizer``).

The neck's normalisation is a dict as in the data preprocessor, ``dict(mean, std,
bgr_to_rgb=True)``: mmseg loads images in BGR order, and the preprocessor flips them to RGB
when ``bgr_to_rgb`` (or ``rgb_to_bgr``) is set, then applies ``(x - mean) / std`` on the
0-255 scale, ``mean``/``std`` listed in the resulting channel order. The Guided* segmentors
hand their preprocessor's values to the neck at build time (:func:`preprocessor_norm`).
"""
import math
from typing import Optional, Sequence

import torch.nn as nn

from anyup_dense.imaging import IMAGENET_MEAN, IMAGENET_STD, Renormalize

# mmseg's usual SegDataPreProcessor values: ImageNet statistics on the 0-255 scale, RGB.
MMSEG_IMAGENET_NORM = dict(mean=[255 * m for m in IMAGENET_MEAN], std=[255 * s for s in IMAGENET_STD],
                           bgr_to_rgb=True)
NORM_KEYS = ("mean", "std", "bgr_to_rgb")


class ToImageNet(Renormalize):
    """Maps an image normalised as ``(x - mean) / std`` (0-255 scale; RGB order when
    ``bgr_to_rgb``, else BGR) to ImageNet-normalised RGB (0-1 scale):
    ``[B,3,H,W] -> [B,3,H,W]``, a channel flip and an affine map per channel."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], bgr_to_rgb: bool = True):
        super().__init__(mean, std, IMAGENET_MEAN, IMAGENET_STD, src_format="RGB" if bgr_to_rgb else "BGR",
                         src_scale=255.0)


def check_image_norm(norm: dict) -> dict:
    """``norm`` with ``bgr_to_rgb`` filled in (default True); ``ValueError`` for other keys
    or other than 3 means / stds."""
    unknown = set(norm) - set(NORM_KEYS)
    if unknown:
        raise ValueError(f"image_norm accepts only {list(NORM_KEYS)} (as in the data preprocessor), "
                         f"got extra keys {sorted(unknown)}")
    if "mean" not in norm or "std" not in norm or len(norm["mean"]) != 3 or len(norm["std"]) != 3:
        raise ValueError(f"image_norm needs 3 'mean' and 3 'std' values, got {norm}")
    return dict(mean=[float(v) for v in norm["mean"]], std=[float(v) for v in norm["std"]],
                bgr_to_rgb=bool(norm.get("bgr_to_rgb", True)))


def image_norm_module(image_norm: Optional[dict]) -> ToImageNet:
    """``image_norm=None`` means mmseg's usual ImageNet preprocessor values."""
    norm = check_image_norm(MMSEG_IMAGENET_NORM if image_norm is None else image_norm)
    return ToImageNet(norm["mean"], norm["std"], norm["bgr_to_rgb"])


def preprocessor_norm(preprocessor: nn.Module) -> Optional[dict]:
    """The normalisation a ``SegDataPreProcessor`` (or mmengine ``ImgDataPreprocessor``)
    applies, as ``dict(mean, std, bgr_to_rgb)`` (mean 0 / std 1 when it does not normalise);
    ``None`` for a preprocessor of another kind."""
    if not hasattr(preprocessor, "_enable_normalize"):
        return None
    flips = bool(getattr(preprocessor, "channel_conversion", getattr(preprocessor, "_channel_conversion", False)))
    if preprocessor._enable_normalize:
        mean, std = preprocessor.mean.flatten().tolist(), preprocessor.std.flatten().tolist()
    else:
        mean, std = [0.0] * 3, [1.0] * 3
    return dict(mean=mean, std=std, bgr_to_rgb=flips)


def same_norm(a: dict, b: dict) -> bool:
    """Whether two checked normalisations agree (values to float32 precision)."""
    return a["bgr_to_rgb"] == b["bgr_to_rgb"] and all(
        math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-6) for x, y in zip(a["mean"] + a["std"], b["mean"] + b["std"]))


def _is_unit_scale(norm: dict) -> bool:
    return max(abs(v) for v in norm["mean"] + norm["std"]) <= 1.0


def check_against_preprocessor(image_norm: dict, preprocessed: dict) -> None:
    """``ValueError`` when an explicit ``image_norm`` is on the 0-1 scale while the data
    preprocessor's values are on the 0-255 scale (the guidance would be off by a factor 255)."""
    if _is_unit_scale(check_image_norm(image_norm)) and not _is_unit_scale(preprocessed):
        raise ValueError(f"neck image_norm={image_norm} is on the 0-1 scale but the data preprocessor normalises "
                         f"0-255 pixels with mean={preprocessed['mean']}, std={preprocessed['std']}: give image_norm "
                         f"on the 0-255 scale, or leave image_norm=None to take the preprocessor's values")
