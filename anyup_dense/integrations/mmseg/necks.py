"""Upsampler necks: one ViT map + the guidance image -> high-resolution map(s).

    neck=dict(type='AnyUpNeck', pretrained='anyup_paper')                 # [B,C,H,W]
    neck=dict(type='AnyUpNeck', out_strides=(4, 8, 16, 32), frozen=False)  # for UPerHead

``UpsamplerNeck`` builds any upsampler of ``anyup_dense.build_upsampler``. Each built-in
upsampler also has a neck of its own name with the upsampler fixed (extra keyword arguments
go to the upsampler), derived from the registry: ``AnyUpNeck``, ``FeatUpNeck`` (=
``FeatUpJBUNeck``), ``FeatSharpNeck``, ``JAFARNeck``, ``LoftUpNeck``, ``NAFNeck``,
``UpsampleAnythingNeck``, ``BilinearNeck``, ``BicubicNeck``, ... (``NAMED_NECKS``). The neck
needs the preprocessed image, so it runs inside ``GuidedEncoderDecoder`` /
``GuidedDepthEstimator``.
"""
import functools
import logging
import typing
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmseg.registry import MODELS

from anyup_dense.backbones.featurizer import backbone_featurizer
from anyup_dense.freezing import freeze
from anyup_dense.integrations.mmseg.guidance import (check_against_preprocessor, check_image_norm, image_norm_module,
                                                     same_norm)
from anyup_dense.ops.chunking import check_chunk_size
from anyup_dense.registry import UPSAMPLERS
from anyup_dense.upsamplers import build_upsampler  # also registers the built-in upsamplers


def _split_upsampler_cfg(upsampler: Union[str, dict], extra: dict) -> Tuple[str, dict]:
    if isinstance(upsampler, str):
        return upsampler, dict(extra)
    if isinstance(upsampler, dict) and "type" in upsampler:
        kwargs = {k: v for k, v in upsampler.items() if k != "type"}
        kwargs.update(extra)
        return upsampler["type"], kwargs
    raise ValueError(f"upsampler must be a name or a dict with a 'type' key, got {upsampler!r}")


@MODELS.register_module()
class UpsamplerNeck(BaseModule):
    """Upsample backbone map ``in_index`` with a guided upsampler.

    Args:
        upsampler: ``dict(type=name, **kwargs)`` or a name (``'anyup'``, ``'bilinear'``,
            ``'featup_jbu'``, ``'featsharp'``, ...); ``**upsampler_kwargs`` are added to it.
        in_index: which backbone output to upsample.
        out_strides: output map i has size ``image_size // out_strides[i]``; the upsampler
            runs once, at the finest stride, and coarser maps are resized from it
            (bilinear, antialiased). ``(1,)``: one full-resolution map.
        frozen: ``True`` keeps the upsampler in eval mode with ``requires_grad=False``
            weights (gradients still flow through it to a trainable backbone); ``False``
            trains it with the rest of the model.
        image_norm: ``dict(mean, std, bgr_to_rgb=True)`` as in the data preprocessor (0-255
            scale), used to convert the image to the ImageNet-normalised RGB upsamplers
            expect. ``None`` (recommended): a Guided* segmentor sets its preprocessor's
            values at build time (:meth:`adopt_preprocessor_norm`); mmseg's ImageNet values
            when the neck is used on its own. An explicit value wins, but one on the 0-1
            scale against a 0-255 preprocessor is a ``ValueError``.
        max_pixels_per_chunk: bound on output pixels attended at once (AnyUp), trading
            speed for peak memory; ``None`` keeps the upsampler's setting.

    Forward: ``(maps, image [B,3,H,W], backbone)`` -> tuple of ``[B, C, H/s, W/s]``.
    """

    requires_image = True

    def __init__(self, upsampler: Union[str, dict], in_index: int = -1, out_strides: Sequence[int] = (1,),
                 frozen: bool = True, image_norm: Optional[dict] = None,
                 max_pixels_per_chunk: Optional[int] = None, init_cfg=None, **upsampler_kwargs):
        super().__init__(init_cfg=init_cfg)
        if not out_strides or any(not isinstance(s, int) or s < 1 for s in out_strides):
            raise ValueError(f"out_strides must be positive ints, got {out_strides!r}")
        name, kwargs = _split_upsampler_cfg(upsampler, upsampler_kwargs)
        self.upsampler_name = name
        self.pretrained = kwargs.get("pretrained")  # the upsampler's weights source, as given
        self.upsampler = build_upsampler(name, **kwargs)
        if max_pixels_per_chunk is not None:
            if not hasattr(self.upsampler, "max_pixels_per_chunk"):
                raise ValueError(f"upsampler {name!r} has no max_pixels_per_chunk setting")
            self.upsampler.max_pixels_per_chunk = check_chunk_size(max_pixels_per_chunk)
        self.in_index = in_index
        self.out_strides = tuple(out_strides)
        self.frozen = frozen
        self.image_norm = None if image_norm is None else check_image_norm(image_norm)
        self.to_imagenet = image_norm_module(self.image_norm)
        if frozen:
            freeze(self.upsampler)

    def adopt_preprocessor_norm(self, preprocessed: dict) -> None:
        """Called by the Guided* segmentors at build time with their data preprocessor's
        ``dict(mean, std, bgr_to_rgb)``: used as the image normalisation unless ``image_norm``
        was given (then only checked against it)."""
        if self.image_norm is None:
            self.to_imagenet = image_norm_module(preprocessed)
            return
        check_against_preprocessor(self.image_norm, preprocessed)
        if not same_norm(self.image_norm, check_image_norm(preprocessed)):
            print_log(f"{type(self).__name__}: the explicit image_norm={self.image_norm} differs from the data "
                      f"preprocessor's {preprocessed}; using image_norm", logger="current", level=logging.WARNING)

    def forward(self, inputs: Sequence[torch.Tensor], image: Optional[torch.Tensor] = None,
                backbone: Optional[nn.Module] = None) -> Tuple[torch.Tensor, ...]:
        if image is None:
            raise RuntimeError(
                f"{type(self).__name__} needs the input image, which a stock segmentor does not pass to "
                f"its neck: use model type='GuidedEncoderDecoder' (instead of 'EncoderDecoder') or "
                f"'GuidedDepthEstimator' (instead of 'DepthEstimator')")
        features = inputs[self.in_index]
        height, width = image.shape[-2:]
        finest = min(self.out_strides)
        size = (max(1, height // finest), max(1, width // finest))
        guidance = self.to_imagenet(image.to(features.dtype))
        extra = {}
        if self.upsampler.requires_featurizer:
            features, extra["featurizer"] = self._featurizer_view(features, guidance, backbone)
        # Frozen = no trainable upsampler weights, not a cut graph: gradients still reach
        # a trainable backbone; autograd records nothing when no input needs a gradient.
        high = self.upsampler(features, guidance, size, **extra)
        if tuple(high.shape[-2:]) != size:  # upsamplers with a fixed output factor (FeatSharp)
            high = F.interpolate(high, size=size, mode="bilinear", align_corners=False)
        return tuple(high if stride == finest else self._resize(high, height // stride, width // stride)
                     for stride in self.out_strides)

    def _featurizer_view(self, features: torch.Tensor, guidance: torch.Tensor, backbone: Optional[nn.Module]):
        """For upsamplers that run the backbone themselves (FeatSharp): the backbone map of the
        square ``model_resolution`` view of the guidance (the given map when the input already
        is that view, as in the probe configs), and the featurizer for its tiles. Any input
        size works, so whole and slide inference do too (as in the Detectron2 backbone)."""
        if backbone is None:
            raise RuntimeError(f"{type(self).__name__} ({self.upsampler_name}) needs the backbone as a "
                               f"featurizer: use a Guided* segmentor, which passes it")
        featurizer = backbone_featurizer(backbone, self.in_index)
        resolution = self.upsampler.model_resolution
        if tuple(guidance.shape[-2:]) != (resolution, resolution):
            view = F.interpolate(guidance, size=(resolution, resolution), mode="bilinear", align_corners=False)
            features = featurizer(view)
        return features, featurizer

    @staticmethod
    def _resize(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        return F.interpolate(x, size=(max(1, height), max(1, width)), mode="bilinear", align_corners=False,
                             antialias=True)


def _neck_class_name(name: str, builder) -> str:
    """``JAFARNeck`` for ``jafar`` (the class its builder returns, + ``Neck``); upsamplers
    that share a class (bilinear, bicubic) are named after the registry name."""
    returned = typing.get_type_hints(builder).get("return")
    shared = sum(typing.get_type_hints(b).get("return") is returned for b in UPSAMPLERS.builders().values()) > 1
    base = name.capitalize() if returned is None or shared else returned.__name__
    return f"{base}Neck"


def _register_named_necks() -> Dict[str, type]:
    """One ``UpsamplerNeck`` subclass per registered upsampler, with the upsampler fixed:
    ``neck=dict(type='JAFARNeck', v_dim=384, pretrained=...)``. ``FeatUpNeck`` is kept as
    the documented name of ``featup_jbu``'s neck."""
    necks = {}
    for name, builder in UPSAMPLERS.builders().items():
        class_name = _neck_class_name(name, builder)
        necks[class_name] = type(class_name, (UpsamplerNeck,), {
            "__init__": functools.partialmethod(UpsamplerNeck.__init__, name),
            "fixed_upsampler": name,
            "__doc__": f"``UpsamplerNeck`` with ``upsampler='{name}'``; keyword arguments go to the upsampler.",
            "__module__": __name__,
        })
    necks["FeatUpNeck"] = necks[_neck_class_name("featup_jbu", UPSAMPLERS.builders()["featup_jbu"])]
    for class_name, neck in necks.items():
        MODELS.register_module(name=class_name, module=neck)
    return necks


NAMED_NECKS = _register_named_necks()
globals().update(NAMED_NECKS)
