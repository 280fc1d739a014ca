"""FeatUp's JBU stack (Fu et al., ICLR 2024): four learned 2x joint bilateral upsampling levels.

Numerically the official ``featup.upsamplers.JBUStack`` (github.com/mhamilton723/FeatUp @ 6b5a6c0,
MIT) on the official checkpoints, with the adaptive convolution computed tap by tap in pure
PyTorch (``anyup_dense.ops.jbu``) instead of FeatUp's compiled extension, and with correct
gradients for all 49 kernel taps.

Forward, for features [B,C,h,w] and the ImageNet-normalised image [B,3,H,W]:
  0. optional ``ChannelNorm`` (per-pixel LayerNorm over C; the hub models' ``use_norm=True``);
  1. four levels; level L pools the image to twice the current size and upsamples 2x (below);
  2. ``out = x + 0.1 * conv1x1(x)`` on the 16x map [B,C,16h,16w];
  3. if ``output_size`` differs from (16h, 16w), the 16x map is resampled to it bilinearly
     (align_corners=False, no antialiasing), as FeatUp's own training resizes its output.
"""
from typing import Dict, Mapping, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from anyup_dense.checkpoints import Release, load_state_dict_strict, load_weights, releases, with_release_kwargs
from anyup_dense.ops.jbu import (apply_jbu_kernel, normalize_kernel, range_kernel, spatial_kernel,
                                 taps_to_pixel_kernels)
from anyup_dense.registry import UPSAMPLERS
from anyup_dense.upsamplers.base import Upsampler
from anyup_dense.upsamplers.channel_norm import LayerNorm2d

NUM_LEVELS = 4
FIXUP_WEIGHT = 0.1

# Hub entry -> feature channels of its backbone (FeatUp's hubconf.py).
BACKBONE_CHANNELS = {"vit": 384, "dino16": 384, "dinov2": 384, "clip": 512, "maskclip": 512, "resnet50": 2048}
NORM_FREE_ONLY = ("maskclip",)

CHECKPOINT_URL = ("https://marhamilresearch4.blob.core.windows.net/feature-upsampling-public/pretrained/"
                  "{exp_dir}{backbone}_jbu_stack_cocostuff.ckpt")


def release_name(backbone: str, use_norm: bool) -> str:
    """Our name for an official checkpoint: ``"dinov2"`` (use_norm) or ``"dinov2_no_norm"``."""
    return backbone if use_norm else f"{backbone}_no_norm"


# The timm backbones whose features a hub entry's backbone gives (the others have no timm twin here).
TIMM_BACKBONES = {"dinov2": ("vit_small_patch14_dinov2.lvd142m",)}


def _release(backbone: str, use_norm: bool) -> Release:
    """The Lightning checkpoint of hub entry ``backbone`` (trained on COCO-Stuff images)."""
    name = release_name(backbone, use_norm)
    return Release(name, CHECKPOINT_URL.format(exp_dir="" if use_norm else "no_norm/", backbone=backbone),
                   layout="lightning", file_name=f"featup_{name}_jbu_stack_cocostuff.ckpt",
                   backbones=TIMM_BACKBONES.get(backbone, ()), licence="MIT",
                   trained_on=f"FeatUp's {backbone!r} features ({BACKBONE_CHANNELS[backbone]} channels) on COCO-Stuff",
                   build_kwargs=dict(dim=BACKBONE_CHANNELS[backbone], use_norm=use_norm))


RELEASES = releases(*(_release(backbone, use_norm)
                      for backbone in BACKBONE_CHANNELS
                      for use_norm in (True, False)
                      if use_norm is False or backbone not in NORM_FREE_ONLY))


def _pointwise_mlp(cin: int, hidden: int, cout: int, dropout: float) -> nn.Sequential:
    """conv1x1 -> exact GELU -> Dropout2d -> conv1x1 (official indices 0 and 3 hold weights)."""
    return nn.Sequential(nn.Conv2d(cin, hidden, 1), nn.GELU(), nn.Dropout2d(dropout), nn.Conv2d(hidden, cout, 1))


class JBULevel(nn.Module):
    """One learned-range JBU level (official ``JBULearnedRange``); output size = guidance size.

    Kernel per output pixel: ``normalize(range_kernel * spatial_kernel)``, then the un-normalised
    fix-up ``+ 0.1 * MLP([kernel; guidance])``; applied to the bicubically resized, reflect-padded
    source.
    """

    def __init__(self, guidance_dim: int = 3, key_dim: int = 32, radius: int = 3):
        super().__init__()
        taps = (2 * radius + 1) ** 2
        self.radius = radius
        self.range_temp = nn.Parameter(torch.tensor(0.0))
        self.sigma_spatial = nn.Parameter(torch.tensor(1.0))
        self.range_proj = _pointwise_mlp(guidance_dim, key_dim, key_dim, dropout=0.1)
        self.fixup_proj = _pointwise_mlp(taps + guidance_dim, taps, taps, dropout=0.1)

    def kernels(self, guidance: torch.Tensor) -> torch.Tensor:
        """guidance [B, 3, H, W] -> per-pixel kernels [B, H, W, d, d] (taps need not sum to 1)."""
        combined = range_kernel(self.range_proj(guidance), self.range_temp, self.radius)
        combined = normalize_kernel(combined * spatial_kernel(self.sigma_spatial, self.radius))
        combined = combined + FIXUP_WEIGHT * self.fixup_proj(torch.cat([combined, guidance], dim=1))
        return taps_to_pixel_kernels(combined)

    def forward(self, source: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        """source [B, C, h, w], guidance [B, 3, H, W] -> [B, C, H, W]."""
        return apply_jbu_kernel(source, self.kernels(guidance), mode="bicubic")


class FeatUpJBU(Upsampler):
    """FeatUp JBU stack (16x) with optional ChannelNorm; any ``output_size`` (see module docstring).

    Args:
        dim: feature channels C the weights are for (a different C raises ``ValueError``).
        use_norm: apply ``ChannelNorm(C)`` to the features first (the hub default).
        guidance_dim, key_dim, radius: JBU level hyper-parameters (official: 3, 32, 3).
        check_finite: reject NaN/Inf inputs.
    """

    def __init__(self, dim: int, use_norm: bool = True, guidance_dim: int = 3, key_dim: int = 32, radius: int = 3,
                 check_finite: bool = False):
        super().__init__(check_finite=check_finite)
        self.expected_channels = dim
        self.channel_norm = LayerNorm2d(dim, eps=1e-5) if use_norm else None  # FeatUp's ChannelNorm
        self.levels = nn.ModuleList(JBULevel(guidance_dim, key_dim, radius) for _ in range(NUM_LEVELS))
        self.residual_dropout = nn.Dropout2d(0.2)
        self.residual_conv = nn.Conv2d(dim, dim, 1)

    @property
    def upsample_factor(self) -> int:
        return 2 ** NUM_LEVELS

    def upsample_native(self, features: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """features [B, C, h, w], image [B, 3, H, W] -> the stack's own output [B, C, 16h, 16w]."""
        x = features if self.channel_norm is None else self.channel_norm(features)
        for level in self.levels:
            guidance = F.adaptive_avg_pool2d(image, (2 * x.shape[-2], 2 * x.shape[-1]))
            x = level(x, guidance)
        fixup = self.residual_conv(self.residual_dropout(x))
        return fixup.mul_(FIXUP_WEIGHT).add_(x)  # x + 0.1 * fixup, without a third full-size buffer

    def upsample(self, features: torch.Tensor, image: torch.Tensor, output_size: Tuple[int, int]) -> torch.Tensor:
        out = self.upsample_native(features, image)
        if tuple(out.shape[-2:]) != tuple(output_size):
            out = F.interpolate(out, size=output_size, mode="bilinear", align_corners=False)
        return out


def convert_official_state_dict(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Official hub/Lightning key names -> :class:`FeatUpJBU` names.

    * ``upsampler.up{1..4}.*`` -> ``levels.{0..3}.*``; ``upsampler.fixup_proj.1.*`` -> ``residual_conv.*``;
    * ``model.1.norm.*`` (ChannelNorm) -> ``channel_norm.*``;
    * dropped: the backbone (every other ``model.*`` key) and the training-only ``downsampler.*`` and
      ``scale_net.*``;
    * any other key is passed through unchanged, so strict loading reports it (and keys already
      in our own layout load as they are).
    """
    converted = {}
    for key, value in state_dict.items():
        if key.startswith("model.1.norm."):
            converted["channel_norm." + key[len("model.1.norm."):]] = value
        elif key.startswith(("model.", "downsampler.", "scale_net.")):
            continue
        elif key.startswith("upsampler.fixup_proj.1."):
            converted["residual_conv." + key[len("upsampler.fixup_proj.1."):]] = value
        elif key.startswith("upsampler.up") and key[len("upsampler.up")].isdigit():
            level, rest = key[len("upsampler.up"):].split(".", 1)
            converted[f"levels.{int(level) - 1}.{rest}"] = value
        else:
            converted[key] = value
    return converted


def _resolve_dim(backbone: Optional[str], dim: Optional[int], use_norm: bool) -> int:
    if backbone is None:
        if dim is None:
            raise ValueError("featup_jbu needs backbone= (one of "
                             f"{', '.join(BACKBONE_CHANNELS)}) or dim= (the feature channels)")
        return dim
    if backbone not in BACKBONE_CHANNELS:
        raise ValueError(f"backbone must be one of {', '.join(BACKBONE_CHANNELS)}, got {backbone!r}")
    if use_norm and backbone in NORM_FREE_ONLY:
        raise ValueError(f"backbone {backbone!r} has only a use_norm=False checkpoint")
    if dim is not None and dim != BACKBONE_CHANNELS[backbone]:
        raise ValueError(f"dim={dim} contradicts backbone {backbone!r} ({BACKBONE_CHANNELS[backbone]} channels)")
    return BACKBONE_CHANNELS[backbone]


@UPSAMPLERS.register("featup_jbu")
def build_featup_jbu(backbone: Optional[str] = None, dim: Optional[int] = None, use_norm: Optional[bool] = None,
                     pretrained: Union[None, bool, str] = None, progress: bool = True, **kwargs) -> FeatUpJBU:
    """FeatUp JBU stack for a hub ``backbone`` (vit, dino16, dinov2, clip, maskclip, resnet50) or ``dim``.

    ``use_norm``: apply ChannelNorm first (default: True, or as the release named by ``pretrained``).
    ``pretrained``: ``True`` (the official checkpoint for ``backbone`` and ``use_norm``), a release
    name (``"dinov2"``, ``"dinov2_no_norm"``, ...; these set ``dim`` and ``use_norm``), a URL (incl.
    ``file://``), a local path, or ``None``/``False`` (random init). Files are FeatUp's Lightning
    checkpoints (weights under ``"state_dict"``, official key names) or, given as a path or URL,
    plain state_dicts; the backbone and training-only keys are dropped, everything else must match
    exactly (unlike upstream's ``strict=False``), else
    :class:`~anyup_dense.checkpoints.CheckpointMismatchError` lists the keys.
    """
    if pretrained is True:
        if backbone is None:
            raise ValueError("pretrained=True needs backbone= to pick the official checkpoint")
        pretrained = release_name(backbone, use_norm is not False)
    sizes = with_release_kwargs(pretrained or None, RELEASES, dict(dim=dim, use_norm=use_norm))
    use_norm = sizes["use_norm"] is not False
    model = FeatUpJBU(_resolve_dim(backbone, sizes["dim"], use_norm), use_norm=use_norm, **kwargs)
    if pretrained:
        state_dict = load_weights(pretrained, RELEASES, progress=progress)
        load_state_dict_strict(model, convert_official_state_dict(state_dict),
                               source=f"FeatUp JBU checkpoint {pretrained!r}")
    return model.eval()
