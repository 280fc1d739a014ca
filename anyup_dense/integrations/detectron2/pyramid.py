"""A ViTDet-style simple feature pyramid: one single-scale map -> p-levels.

Each output level ``pN`` (stride ``2**N``) is made from the input map (stride ``in_stride``)
by a resampling stage, then a 1x1 and a 3x3 conv, each followed by the norm:
  * finer than the input: transposed 2x2/stride-2 convs, halving channels each time, with
    norm + GELU between them;
  * same stride: identity;
  * coarser: max-pooling by the stride ratio.
A top block adds levels above the last one: ``"maxpool"`` -> one (Mask R-CNN's p6),
``"p6p7"`` -> two (RetinaNet's p6, p7), ``None`` -> none.
"""
import math
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn

from anyup_dense.integrations.detectron2.norm import NormArg, make_norm

TOP_BLOCKS = (None, "maxpool", "p6p7")


def _log2_exact(value: float, what: str) -> int:
    exponent = math.log2(value)
    if not exponent.is_integer():
        raise ValueError(f"{what} must be a power of two, got {value}")
    return int(exponent)


def _resampling_stage(channels: int, scale: float, norm: NormArg) -> nn.Module:
    """Resample a [B, C, h, w] map by ``scale`` (a power of two); out channels: ``C / scale`` if
    ``scale > 1`` else ``C`` (see :func:`_stage_channels`)."""
    steps = _log2_exact(scale, "pyramid scale")
    if steps < 0:
        return nn.MaxPool2d(kernel_size=2 ** -steps, stride=2 ** -steps)
    layers: List[nn.Module] = []
    for i in range(steps):
        if channels < 2:
            raise ValueError(f"cannot upsample a {channels}-channel map {steps} times (channels halve per step)")
        layers.append(nn.ConvTranspose2d(channels, channels // 2, kernel_size=2, stride=2))
        channels //= 2
        if i < steps - 1:
            layers += [make_norm(norm, channels) or nn.Identity(), nn.GELU()]
    return nn.Sequential(*layers)


def _stage_channels(channels: int, scale: float) -> int:
    steps = max(_log2_exact(scale, "pyramid scale"), 0)
    return channels >> steps


def _top_block(kind: Optional[str], channels: int, in_feature: str) -> Optional[nn.Module]:
    """Detectron2's own top blocks; each returns a list of maps from the last level's map."""
    from detectron2.modeling.backbone.fpn import LastLevelMaxPool, LastLevelP6P7

    if kind == "maxpool":
        return LastLevelMaxPool()
    if kind == "p6p7":
        return LastLevelP6P7(channels, channels, in_feature)
    return None


class SimpleFeaturePyramid(nn.Module):
    """[B, in_channels, h, w] at stride ``in_stride`` -> ``{"pN": [B, out_channels, ., .]}``.

    Args:
        in_channels: channels of the input map.
        in_stride: stride of the input map w.r.t. the image (a power of two).
        out_channels: channels of every output level.
        levels: pyramid levels made from the input (``N`` of ``pN``, ascending, consecutive).
        top_block: ``"maxpool"``, ``"p6p7"`` or ``None`` (see module docstring).
        norm: ``"LN"`` (channel-first LayerNorm), any ``get_norm`` string, a callable, or ``""``.
    """

    def __init__(self, in_channels: int, in_stride: int, out_channels: int = 256,
                 levels: Sequence[int] = (2, 3, 4, 5), top_block: Optional[str] = "maxpool", norm: NormArg = "LN"):
        super().__init__()
        from detectron2.layers import Conv2d
        from fvcore.nn import weight_init

        levels = [int(level) for level in levels]
        if not levels or levels != list(range(levels[0], levels[0] + len(levels))):
            raise ValueError(f"levels must be consecutive ascending integers, got {levels}")
        if top_block not in TOP_BLOCKS:
            raise ValueError(f"top_block must be one of {TOP_BLOCKS}, got {top_block!r}")
        _log2_exact(in_stride, "in_stride")
        use_bias = norm in ("", None)
        self.stages = nn.ModuleDict()
        for level in levels:
            scale = in_stride / 2 ** level
            mid = _stage_channels(in_channels, scale)
            lateral = Conv2d(mid, out_channels, 1, bias=use_bias, norm=make_norm(norm, out_channels))
            output = Conv2d(out_channels, out_channels, 3, padding=1, bias=use_bias,
                            norm=make_norm(norm, out_channels))
            weight_init.c2_xavier_fill(lateral)
            weight_init.c2_xavier_fill(output)
            self.stages[f"p{level}"] = nn.Sequential(_resampling_stage(in_channels, scale, norm), lateral, output)
        self.top_block = _top_block(top_block, out_channels, f"p{levels[-1]}")
        extra = 0 if self.top_block is None else self.top_block.num_levels
        self.out_features = [f"p{level}" for level in range(levels[0], levels[-1] + 1 + extra)]
        self.strides = {name: 2 ** int(name[1:]) for name in self.out_features}
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """[B, C, h, w] -> ``{"pN": [B, out_channels, ceil(h * in_stride / 2**N), ...]}``."""
        outputs = {name: stage(x) for name, stage in self.stages.items()}
        if self.top_block is not None:
            last = list(outputs.values())[-1]
            extra_names = self.out_features[len(self.stages):]
            outputs.update(zip(extra_names, self.top_block(last)))
        return outputs
