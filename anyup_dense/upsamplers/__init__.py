"""Upsamplers with one interface: ``up(features, image, output_size=None)``.

Importing this package registers the built-in upsamplers in ``anyup_dense.UPSAMPLERS``.
"""
from anyup_dense.upsamplers.anyup import AnyUp
from anyup_dense.upsamplers.base import Upsampler, validate_inputs
from anyup_dense.upsamplers.baselines import InterpolationUpsampler
from anyup_dense.upsamplers.checkpoint import CheckpointMismatchError
from anyup_dense.upsamplers.featsharp import FeatSharp
from anyup_dense.upsamplers.featup_implicit import FeatUpImplicit
from anyup_dense.upsamplers.featup_jbu import FeatUpJBU
from anyup_dense.upsamplers.jafar import JAFAR
from anyup_dense.upsamplers.loftup import LoftUp
from anyup_dense.upsamplers.naf import NAF
from anyup_dense.upsamplers.uplift import UPLiFT
from anyup_dense.upsamplers.upsample_anything import UpsampleAnything

__all__ = ["AnyUp", "FeatSharp", "FeatUpImplicit", "FeatUpJBU", "JAFAR", "LoftUp", "NAF", "UPLiFT", "UpsampleAnything", "Upsampler", "InterpolationUpsampler",
           "CheckpointMismatchError", "validate_inputs"]
