"""LazyConfig side: builders whose arguments survive command-line overrides.

``LazyConfig.apply_overrides`` parses ``key=value`` with Hydra's grammar, which reads ``null``
as ``None`` but ``None`` as the string ``'None'``. Both spellings work here: :func:`lazy_vit`
and :func:`lazy_upsampler` turn the strings ``'None'``/``'null'`` into ``None`` before
building, and ``UpsampledViTBackbone`` does the same for its ``upsampler`` argument. Examples
(tested as written): the docstring of ``configs/detectron2/lazy/mask_rcnn_vit_s14_anyup_2x.py``.
"""
from typing import Any

import torch.nn as nn

from anyup_dense.backbones.timm_vit import TimmViT
from anyup_dense.upsamplers import build_upsampler

NULL_STRINGS = ("None", "null")


def null_to_none(value: Any) -> Any:
    """``'None'``/``'null'`` -> ``None``; anything else unchanged."""
    return None if isinstance(value, str) and value in NULL_STRINGS else value


def lazy_vit(model_name: str, **kwargs) -> TimmViT:
    """``TimmViT(model_name, **kwargs)`` with ``'None'``/``'null'`` string values read as ``None``."""
    return TimmViT(model_name, **{key: null_to_none(value) for key, value in kwargs.items()})


def lazy_upsampler(name: str, **kwargs) -> nn.Module:
    """``build_upsampler(name, **kwargs)`` with ``'None'``/``'null'`` string values read as ``None``."""
    return build_upsampler(name, **{key: null_to_none(value) for key, value in kwargs.items()})
