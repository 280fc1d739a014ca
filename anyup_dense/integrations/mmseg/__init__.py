"""MMSegmentation 1.x integration: registered backbone, upsampler necks, guided segmentors,
probe heads, losses, metrics, datasets and transforms.

Use it from a config with ``custom_imports=dict(imports=['anyup_dense.integrations.mmseg'])``.
Importing this package applies the mmcv-lite shim first (so ``import mmseg.models`` works
without compiled mmcv ops) and raises an ``ImportError`` naming the missing package when
mmsegmentation, mmengine or mmcv is not installed.
"""
import importlib.util

REQUIRED = (("mmengine", "mmengine"), ("mmcv", "mmcv-lite==2.1.0 (or mmcv==2.1.0)"),
            ("mmseg", "mmsegmentation==1.2.2"))


def _check_installed() -> None:
    missing = [pip for module, pip in REQUIRED if importlib.util.find_spec(module) is None]
    if missing:
        raise ImportError("anyup_dense.integrations.mmseg needs MMSegmentation 1.x; missing: "
                          + ", ".join(missing) + ". Install with: pip install " + " ".join(missing))


_check_installed()

from anyup_dense.integrations import mmcv_lite_compat  # noqa: E402

mmcv_lite_compat.apply()

from anyup_dense.integrations.mmseg.backbone import MMSegTimmViT  # noqa: E402
from anyup_dense.integrations.mmseg.datasets import (  # noqa: E402
    ADE20K151Dataset, COCOStuff27Dataset, NYUNormalsDataset)
from anyup_dense.integrations.mmseg.depth_head import DepthProbeHead  # noqa: E402
from anyup_dense.integrations.mmseg.lean_checkpoint import LeanCheckpointHook  # noqa: E402
from anyup_dense.integrations.mmseg.linear_head import LinearProbeHead  # noqa: E402
from anyup_dense.integrations.mmseg.depth_metric import AlignedDepthMetric  # noqa: E402
from anyup_dense.integrations.mmseg.metrics import NormalMetric  # noqa: E402
from anyup_dense.integrations.mmseg.necks import (  # noqa: E402
    AnyUpNeck, BilinearNeck, FeatSharpNeck, FeatUpNeck, UpsamplerNeck)
from anyup_dense.integrations.mmseg.normal_head import AngularLoss, NormalProbeHead  # noqa: E402
from anyup_dense.integrations.mmseg.segmentors import (  # noqa: E402
    GuidedDepthEstimator, GuidedEncoderDecoder, GuidedNormalEstimator)
from anyup_dense.integrations.mmseg.transforms import (  # noqa: E402
    LoadNormalAnnotation, PackNormalInputs, ResizeCenterCrop)
from anyup_dense.integrations.mmseg.visualization import ProbeVisualizationHook, ProbeVisualizer  # noqa: E402

__all__ = [
    "MMSegTimmViT", "UpsamplerNeck", "AnyUpNeck", "FeatUpNeck", "FeatSharpNeck", "BilinearNeck",
    "GuidedEncoderDecoder", "GuidedDepthEstimator", "GuidedNormalEstimator", "LinearProbeHead",
    "DepthProbeHead", "NormalProbeHead", "AngularLoss", "NormalMetric", "AlignedDepthMetric", "ADE20K151Dataset",
    "COCOStuff27Dataset", "NYUNormalsDataset", "ResizeCenterCrop", "LoadNormalAnnotation",
    "PackNormalInputs", "ProbeVisualizationHook", "ProbeVisualizer", "LeanCheckpointHook",
]
