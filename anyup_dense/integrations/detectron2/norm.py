"""Norm layers for the feature pyramid and heads.

The released Detectron2 (0.5/0.6) has no ``"LN"`` in ``get_norm``; ViTDet-style models use a
LayerNorm over the channel axis of NCHW maps. :class:`LayerNorm2d` is that layer, and
:func:`resolve_norm` turns ``"LN"`` into it so yacs configs can still name it.
"""
from typing import Callable, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

NormArg = Union[None, str, Callable[[int], nn.Module]]


class LayerNorm2d(nn.Module):
    """LayerNorm over C of a [B, C, H, W] map (each pixel normalised on its own).

    Being a class called as ``LayerNorm2d(channels)``, it can be passed wherever Detectron2
    takes a norm callable (``Conv2d(norm=...)``, ``conv_norm=`` of box/mask heads).
    """

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> [B, C, H, W]."""
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.weight.shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


def resolve_norm(norm: NormArg) -> NormArg:
    """``"LN"`` -> :class:`LayerNorm2d`; anything else unchanged (for ``detectron2.layers.get_norm``)."""
    return LayerNorm2d if norm == "LN" else norm


def make_norm(norm: NormArg, channels: int) -> Optional[nn.Module]:
    """A norm module for ``channels`` (``None`` for ``""``/``None``); also accepts ``"LN"``."""
    from detectron2.layers import get_norm

    return get_norm(resolve_norm(norm), channels)
