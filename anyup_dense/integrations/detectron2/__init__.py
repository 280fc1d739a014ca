"""Detectron2 integration: a ViT + upsampler + simple-feature-pyramid backbone.

Importing this package applies the Pillow/numpy compatibility shim (``d2_compat``) before
detectron2 is imported, and registers ``build_upsampled_vit_backbone`` in
``BACKBONE_REGISTRY``. yacs: :func:`add_anyup_config`; LazyConfig: use
:class:`UpsampledViTBackbone` directly, with the builders of ``lazy.py``. See ``docs/detectron2.md``.
"""
from anyup_dense.integrations import d2_compat

d2_compat.apply()

try:
    import detectron2  # noqa: F401
except ImportError as err:
    raise ImportError(
        "anyup_dense.integrations.detectron2 needs the 'detectron2' package, which is not installed; "
        "install it with tools/install_detectron2.sh (Detectron2 0.6 from its PyPI sdist)") from err

from anyup_dense.integrations.detectron2.backbone import UpsampledViTBackbone  # noqa: E402
from anyup_dense.integrations.detectron2.config import (  # noqa: E402
    add_anyup_config,
    build_upsampled_vit_backbone,
)
from anyup_dense.imaging import Renormalize  # noqa: E402
from anyup_dense.integrations.detectron2.lr_decay import build_optimizer, layer_decay_param_groups  # noqa: E402
from timm.layers import LayerNorm2d  # noqa: E402
from anyup_dense.integrations.detectron2 import trainer  # noqa: E402,F401
from anyup_dense.integrations.detectron2.pyramid import SimpleFeaturePyramid  # noqa: E402

__all__ = ["UpsampledViTBackbone", "SimpleFeaturePyramid", "LayerNorm2d", "Renormalize", "add_anyup_config",
           "build_upsampled_vit_backbone", "build_optimizer", "layer_decay_param_groups"]
