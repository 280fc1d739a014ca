"""Build-time checks of a Guided* segmentor, so that a config error fails when the model is
built, with the config key to set, not as a raw shape error at the first iteration or at the
first validation.

* :func:`check_head_channels`: the maps an upsampler neck gives (``len(out_strides)`` maps with
  the channels of backbone map ``in_index``) against each head's ``in_index``,
  ``in_channels`` and ``input_transform`` (and DeepLabV3+'s ``c1_in_channels``);
* :func:`check_patch_multiples`: ``test_cfg.crop_size`` (slide inference) and the data
  preprocessor's ``size`` against a ``TimmViT`` backbone's patch size.
"""
from typing import List, Sequence, Tuple

import torch
import torch.nn as nn
from mmseg.models.decode_heads.decode_head import BaseDecodeHead

from anyup_dense.backbones import TimmViT
from anyup_dense.integrations.mmseg.necks import UpsamplerNeck

PROBE_SIZE = 128  # dummy image side for backbones whose channels are not static: divisible by strides up to 32


def backbone_channels(backbone: nn.Module) -> List[int]:
    """Channels of each backbone output: static for ``TimmViT`` (``embed_dim`` per
    ``out_indices`` entry), else measured on a zero image [1,3,128,128] in eval mode without
    gradients (every module's train/eval flag is restored afterwards)."""
    if hasattr(backbone, "embed_dim") and hasattr(backbone, "out_indices"):
        return [int(backbone.embed_dim)] * len(backbone.out_indices)
    modes = [(module, module.training) for module in backbone.modules()]
    backbone.eval()
    try:
        with torch.no_grad():
            maps = backbone(torch.zeros(1, 3, PROBE_SIZE, PROBE_SIZE))
    finally:
        for module, mode in modes:
            module.training = mode
    return [int(m.shape[1]) for m in maps]


def named_heads(segmentor: nn.Module) -> List[Tuple[str, nn.Module]]:
    """``(config key, head)`` for the decode head and each auxiliary head."""
    heads = [("model.decode_head", segmentor.decode_head)]
    auxiliary = getattr(segmentor, "auxiliary_head", None)
    if isinstance(auxiliary, nn.ModuleList):
        heads += [(f"model.auxiliary_head[{i}]", head) for i, head in enumerate(auxiliary)]
    elif auxiliary is not None:
        heads.append(("model.auxiliary_head", auxiliary))
    return heads


def check_head_channels(segmentor: nn.Module) -> None:
    """Raise ``ValueError`` naming the key to set when a head reads a map the upsampler neck
    does not give, or expects other channels. Only for :class:`UpsamplerNeck` necks."""
    neck = getattr(segmentor, "neck", None)
    if not isinstance(neck, UpsamplerNeck):
        return
    levels = backbone_channels(segmentor.backbone)
    if not -len(levels) <= neck.in_index < len(levels):
        raise ValueError(f"model.neck.in_index={neck.in_index} is out of range: the backbone gives {len(levels)} "
                         f"map(s)")
    channels = levels[neck.in_index]
    count = len(neck.out_strides)
    for key, head in named_heads(segmentor):
        if isinstance(head, BaseDecodeHead):
            _check_head(key, head, channels, count, neck.out_strides)


def _check_head(key: str, head: BaseDecodeHead, channels: int, count: int, strides: Sequence[int]) -> None:
    indices = list(head.in_index) if isinstance(head.in_index, (list, tuple)) else [head.in_index]
    outside = [i for i in indices if not -count <= i < count]
    if outside:
        raise ValueError(f"{key}.in_index={head.in_index} reads neck map(s) {outside}, but the neck gives {count} "
                         f"map(s) (model.neck.out_strides={tuple(strides)}): set model.neck.out_strides to one "
                         f"stride per map the head reads, or {key}.in_index")
    if head.input_transform == "multiple_select":
        expected, given = list(head.in_channels), [channels] * len(indices)
    elif head.input_transform == "resize_concat":
        expected, given = head.in_channels, channels * len(indices)  # BaseDecodeHead stores the sum
    else:
        expected, given = head.in_channels, channels
    if expected != given:
        wanted = [channels] * len(indices) if head.input_transform else channels
        raise ValueError(f"{key} expects {expected} input channels, but the upsampler neck gives {channels} per map "
                         f"(the channels of the backbone map it upsamples): set {key}.in_channels={wanted}")
    c1 = getattr(head, "c1_bottleneck", None)  # DeepLabV3+ reads neck map 0 as its low-level input
    if c1 is not None and c1.conv.in_channels != channels:
        raise ValueError(f"{key} expects {c1.conv.in_channels} low-level channels, but the upsampler neck gives "
                         f"{channels}: set {key}.c1_in_channels={channels}")


def check_patch_multiples(segmentor: nn.Module) -> None:
    """Raise ``ValueError`` naming the key when slide inference's ``test_cfg.crop_size`` or the
    data preprocessor's fixed ``size`` is not a multiple of a ``TimmViT`` backbone's patch
    (it refuses such inputs; other backbones pad them themselves)."""
    if not isinstance(segmentor.backbone, TimmViT):
        return
    patch = segmentor.backbone.patch_size
    test_cfg = segmentor.test_cfg or {}
    sizes = [("model.data_preprocessor.size", getattr(segmentor.data_preprocessor, "size", None))]
    if test_cfg.get("mode") == "slide":
        sizes.append(("model.test_cfg.crop_size", test_cfg.get("crop_size")))
    for key, value in sizes:
        values = [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]
        if any(v % patch for v in values):
            fixed = tuple(max(patch, round(v / patch) * patch) for v in values)
            raise ValueError(f"{key}={value} is not a multiple of the backbone patch size {patch} (TimmViT "
                             f"{segmentor.backbone.model_name!r} refuses such inputs): use e.g. "
                             f"{fixed if len(fixed) > 1 else fixed[0]}")
