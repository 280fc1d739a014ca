"""Upsamplers with one interface: ``up(features, image, output_size=None)``.

Importing this package registers the built-in upsamplers in ``anyup_dense.UPSAMPLERS``;
:func:`build_upsampler` and :func:`list_upsamplers` (re-exported as ``anyup_dense.*``) see them.
"""
from typing import List

import torch.nn as nn

from anyup_dense.registry import UPSAMPLERS
from anyup_dense.upsamplers.anyup import AnyUp
from anyup_dense.upsamplers.base import Upsampler, validate_inputs
from anyup_dense.upsamplers.baselines import InterpolationUpsampler
from anyup_dense.checkpoints import CheckpointMismatchError
from anyup_dense.upsamplers.featsharp import FeatSharp
from anyup_dense.upsamplers.featup_implicit import FeatUpImplicit
from anyup_dense.upsamplers.featup_jbu import FeatUpJBU
from anyup_dense.upsamplers.jafar import JAFAR
from anyup_dense.upsamplers.loftup import LoftUp
from anyup_dense.upsamplers.naf import NAF
from anyup_dense.upsamplers.uplift import UPLiFT
from anyup_dense.upsamplers.upsample_anything import UpsampleAnything


def build_upsampler(name: str, **kwargs) -> nn.Module:
    """Build a registered upsampler, e.g. ``build_upsampler("anyup", pretrained="anyup_paper")``."""
    return UPSAMPLERS.build(name, **kwargs)


def list_upsamplers() -> List[str]:
    """Names of the registered upsamplers, sorted."""
    return UPSAMPLERS.names()


__all__ = ["build_upsampler", "list_upsamplers", "AnyUp", "FeatSharp", "FeatUpImplicit", "FeatUpJBU", "JAFAR",
           "LoftUp", "NAF", "UPLiFT", "UpsampleAnything", "Upsampler", "InterpolationUpsampler",
           "CheckpointMismatchError", "validate_inputs"]
