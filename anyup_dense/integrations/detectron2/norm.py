"""Norm layers for the feature pyramid and heads.

The released Detectron2 (0.5/0.6) has no ``"LN"`` in ``get_norm``; ViTDet-style models use a
LayerNorm over the channel axis of NCHW maps, which is ``timm.layers.LayerNorm2d`` (eps 1e-6).
:func:`resolve_norm` turns ``"LN"`` into it so yacs configs can still name it; being a class
called as ``LayerNorm2d(channels)``, it can be passed wherever Detectron2 takes a norm callable
(``Conv2d(norm=...)``, ``conv_norm=`` of box/mask heads).
"""
from typing import Callable, Optional, Union

import torch.nn as nn
from timm.layers import LayerNorm2d

NormArg = Union[None, str, Callable[[int], nn.Module]]


def resolve_norm(norm: NormArg) -> NormArg:
    """``"LN"`` -> ``timm.layers.LayerNorm2d``; anything else unchanged (for ``detectron2.layers.get_norm``)."""
    return LayerNorm2d if norm == "LN" else norm


def make_norm(norm: NormArg, channels: int) -> Optional[nn.Module]:
    """A norm module for ``channels`` (``None`` for ``""``/``None``); also accepts ``"LN"``."""
    from detectron2.layers import get_norm

    return get_norm(resolve_norm(norm), channels)
