"""The Detectron2 backbone: timm ViT -> upsampler (x factor) -> simple feature pyramid.

    x [B,3,H,W] (Detectron2-normalised, H and W divisible by ``size_divisibility``)
      -> ViT on the image resized to (H/vit_stride * patch, W/vit_stride * patch)
      -> features [B,C,H/vit_stride,W/vit_stride]
      -> upsampler(features, ImageNet-normalised x, output_size = factor x that)
         (FeatSharp-style upsamplers instead get the ViT map of their own square view plus the
         ViT as a featurizer for their tiles)
      -> SimpleFeaturePyramid -> {"p2": [B,256,H/4,W/4], ..., "p6": [B,256,H/64,W/64]}

Inputs smaller than ``size_divisibility`` (the largest of ``vit_stride`` and the coarsest
pyramid stride) are refused: they would give an empty map somewhere on the way.

``vit_stride`` is the nominal stride of the ViT map (16, as in ViTDet). A patch-14 ViT
(DINOv2) sees the image scaled by 14/16, so its h x w token grid lands exactly on a stride-16
grid of the detector's image, and every pyramid stride stays a power of two (which
Detectron2's ROI poolers require). With ``factor`` f the pyramid's input stride is
``vit_stride / f``; ``factor=1`` with no upsampler is the ViTDet baseline.
"""
from typing import Dict, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from detectron2.layers import ShapeSpec
from detectron2.modeling import Backbone

from anyup_dense.backbones import TimmViT
from anyup_dense.freezing import freeze
from anyup_dense.imaging import IMAGENET_MEAN, IMAGENET_STD, Renormalize
from anyup_dense.integrations.detectron2.lazy import null_to_none
from anyup_dense.integrations.detectron2.norm import NormArg
from anyup_dense.integrations.detectron2.pyramid import SimpleFeaturePyramid


def check_upsampler_fits_vit(upsampler: nn.Module, vit: TimmViT) -> None:
    """Raise ``ValueError`` when ``upsampler`` cannot take this ViT's features: a channel count
    (``expected_channels``, the upsampler's ``dim``) other than the ViT's, or, for featurizer
    upsamplers, a ``model_resolution`` the ViT's patch size does not divide or a feature grid
    (``lr_size``) other than ``model_resolution / patch``."""
    name = type(upsampler).__name__
    expected = getattr(upsampler, "expected_channels", None)
    if expected is not None and expected != vit.embed_dim:
        raise ValueError(f"{name} takes {expected}-channel features (its dim) but the ViT {vit.model_name} gives "
                         f"{vit.embed_dim}; set the upsampler's dim to {vit.embed_dim}")
    if not getattr(upsampler, "requires_featurizer", False):
        return
    resolution, patch = upsampler.model_resolution, vit.patch_size
    grid = getattr(upsampler, "lr_size", resolution // patch)
    if resolution % patch or grid != resolution // patch:
        raise ValueError(f"{name} takes a {grid}x{grid} feature grid at model_resolution={resolution} (patch_size "
                         f"{resolution // grid}), but the ViT {vit.model_name} has patch size {patch}; set the "
                         f"upsampler's patch_size to {patch} and its model_resolution to a multiple of {patch}")


class UpsampledViTBackbone(Backbone):
    """A ViTDet-style backbone whose single-scale ViT map is upsampled before the pyramid.

    Args:
        vit: the feature extractor (its ``out_indices[0]`` map is used; frozen or not is
            decided when it is built).
        upsampler: any registered upsampler module, or ``None`` for no upsampling (also the
            strings ``"None"``/``"null"``, which is what a LazyConfig override may deliver).
            Checked against the ViT by :func:`check_upsampler_fits_vit`.
        factor: upsampling factor of the ViT map (power of two; must be 1 without upsampler).
        upsampler_frozen: eval mode and no gradients for the upsampler (kept in eval by
            ``train()``); ``False`` trains it with the detector.
        vit_stride: nominal stride of the ViT map w.r.t. the detector's input.
        out_channels, levels, top_block, norm: see :class:`SimpleFeaturePyramid`.
        pixel_mean, pixel_std, input_format: Detectron2's ``MODEL.PIXEL_MEAN/STD`` (0..255
            units) and ``INPUT.FORMAT`` of the images this backbone receives.
    """

    def __init__(self, vit: TimmViT, upsampler: Union[None, str, nn.Module] = None, factor: int = 1, *,
                 upsampler_frozen: bool = True, vit_stride: int = 16, out_channels: int = 256,
                 levels: Sequence[int] = (2, 3, 4, 5), top_block: Optional[str] = "maxpool", norm: NormArg = "LN",
                 pixel_mean: Sequence[float] = (103.53, 116.28, 123.675), pixel_std: Sequence[float] = (1.0, 1.0, 1.0),
                 input_format: str = "BGR"):
        super().__init__()
        upsampler = null_to_none(upsampler)
        if upsampler is not None and not isinstance(upsampler, nn.Module):
            raise ValueError(f"upsampler must be an nn.Module or None, got {upsampler!r}")
        if upsampler is not None:
            check_upsampler_fits_vit(upsampler, vit)
        if int(factor) != factor or factor < 1:
            raise ValueError(f"factor must be a positive integer, got {factor}")
        if upsampler is None and factor != 1:
            raise ValueError(f"factor={factor} needs an upsampler; pass upsampler=None only with factor=1")
        if vit_stride % factor:
            raise ValueError(f"factor ({factor}) must divide vit_stride ({vit_stride})")
        self.vit = vit
        self.upsampler = upsampler
        self.factor = int(factor)
        self.upsampler_frozen = upsampler_frozen
        self.vit_stride = vit_stride
        if upsampler is not None and upsampler_frozen:
            freeze(upsampler)
        self.to_vit = Renormalize(pixel_mean, pixel_std, vit.mean, vit.std, input_format, src_scale=255.0)
        self.to_imagenet = Renormalize(pixel_mean, pixel_std, IMAGENET_MEAN, IMAGENET_STD, input_format,
                                       src_scale=255.0)
        self.imagenet_to_vit = Renormalize(IMAGENET_MEAN, IMAGENET_STD, vit.mean, vit.std)
        self.pyramid = SimpleFeaturePyramid(vit.embed_dim, vit_stride // self.factor, out_channels, levels,
                                            top_block, norm)
        self._out_features = list(self.pyramid.out_features)
        self._out_feature_strides = dict(self.pyramid.strides)
        self._out_feature_channels = {name: out_channels for name in self._out_features}
        self._size_divisibility = max(vit_stride, *(2 ** int(level) for level in levels))

    @property
    def size_divisibility(self) -> int:
        return self._size_divisibility

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {name: ShapeSpec(channels=self._out_feature_channels[name], stride=self._out_feature_strides[name])
                for name in self._out_features}

    def vit_features(self, vit_image: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
        """ViT-normalised [B,3,H,W] -> [B,C,grid[0],grid[1]] (resized to grid x patch size first)."""
        size = (grid[0] * self.vit.patch_size, grid[1] * self.vit.patch_size)
        if tuple(vit_image.shape[-2:]) != size:
            vit_image = F.interpolate(vit_image, size=size, mode="bilinear", align_corners=False)
        return self.vit(vit_image)[0]

    def featurize(self, crops: torch.Tensor) -> torch.Tensor:
        """The ViT as a featurizer: ImageNet-normalised crops [N,3,R,R] (R divisible by the patch
        size) -> [N,C,R/p,R/p]."""
        return self.vit(self.imagenet_to_vit(crops))[0]

    def _grad_context(self, features_need_grad: bool):
        """No autograd through a frozen upsampler unless gradients must reach the ViT."""
        return torch.set_grad_enabled(torch.is_grad_enabled() and (features_need_grad or not self.upsampler_frozen))

    def upsampled_vit_features(self, x: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
        """Detectron2-normalised x [B,3,H,W] -> upsampled ViT map [B,C,grid*factor].

        Upsamplers with ``requires_featurizer`` (FeatSharp) run the ViT themselves: they get the
        ViT map of their square ``model_resolution`` view and :meth:`featurize` for the tiles.
        The others get the ViT map on the detector's grid.
        """
        guidance = self.to_imagenet(x)
        size = (grid[0] * self.factor, grid[1] * self.factor)
        if self.upsampler.requires_featurizer:
            resolution = self.upsampler.model_resolution
            view = F.interpolate(guidance, size=(resolution, resolution), mode="bilinear", align_corners=False)
            features = self.featurize(view)
            with self._grad_context(features.requires_grad):
                return self.upsampler(features, guidance, output_size=size, featurizer=self.featurize)
        features = self.vit_features(self.to_vit(x), grid)
        with self._grad_context(features.requires_grad):
            return self.upsampler(features, guidance, output_size=size)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """x [B,3,H,W] Detectron2-normalised, H and W at least ``size_divisibility`` and divisible
        by ``vit_stride`` -> {"pN": [B, out_channels, H/2**N, W/2**N]} (ceil)."""
        height, width = x.shape[-2:]
        if min(height, width) < self.size_divisibility:
            coarsest = list(self.pyramid.stages)[-1]
            raise ValueError(f"input size {height}x{width} is below the backbone's minimum of {self.size_divisibility} "
                             f"px per side (vit_stride {self.vit_stride}; pyramid level {coarsest} has stride "
                             f"{self.pyramid.strides[coarsest]}); pad or resize the image")
        if height % self.vit_stride or width % self.vit_stride:
            raise ValueError(f"input size {height}x{width} must be divisible by vit_stride={self.vit_stride}; "
                             f"set the model's size_divisibility to {self.size_divisibility}")
        grid = (height // self.vit_stride, width // self.vit_stride)
        if self.upsampler is None:
            return self.pyramid(self.vit_features(self.to_vit(x), grid))
        return self.pyramid(self.upsampled_vit_features(x, grid))
