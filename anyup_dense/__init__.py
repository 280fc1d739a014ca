"""anyup_dense: universal feature upsamplers (AnyUp, FeatUp JBU, FeatSharp, baselines)
between a ViT backbone and a dense head, with MMSegmentation and Detectron2 integrations.

``import anyup_dense`` needs torch only; the framework integrations live in
``anyup_dense.integrations`` and are imported explicitly.
"""
from anyup_dense.registry import UPSAMPLERS
from anyup_dense.upsamplers import build_upsampler, list_upsamplers

__version__ = "0.1.0"

__all__ = ["UPSAMPLERS", "build_upsampler", "list_upsamplers", "__version__"]
