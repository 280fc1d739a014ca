"""``NormalMetric``: angular error of predicted surface normals (Probe3D protocol)."""
import math
import os
import os.path as osp
from typing import Dict, Optional, Sequence

import mmcv
import numpy as np
import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric
from mmseg.registry import METRICS

from anyup_dense.integrations.mmseg.normal_head import valid_normals
from anyup_dense.integrations.mmseg.transforms import normals_image

THRESHOLDS = (11.25, 22.5, 30.0)


def angular_errors(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """pred, gt [3,H,W] -> angles in degrees at the valid pixels of ``gt`` (1-D)."""
    mask = valid_normals(gt[None])[0]
    cos = (F.normalize(pred, dim=0) * F.normalize(gt, dim=0)).sum(dim=0)[mask]
    return torch.rad2deg(torch.acos(cos.clamp(-1.0, 1.0)))


@METRICS.register_module()
class NormalMetric(BaseMetric):
    """Per image over valid pixels, then averaged over images: ``mean``, ``median`` and
    ``rmse`` of the angular error (degrees) and the fractions ``a11.25``, ``a22.5``,
    ``a30`` of pixels under those angles (0-1, as in AnyUp Tab. 3).

    Reads ``pred_normal_map`` and ``gt_normal_map`` ([3,H,W]) of each data sample; images
    without a valid pixel are skipped. ``output_dir``: also write each prediction there as
    ``<image name>.png`` in the dataset's encoding (RGB ``(n + 1) * 127.5``), as mmseg's
    metrics do with ``tools/test.py --out``.
    """

    default_prefix = "normal"

    def __init__(self, output_dir: Optional[str] = None, **kwargs):
        super().__init__(**kwargs)
        self.output_dir = output_dir
        if output_dir is not None:
            os.makedirs(output_dir, exist_ok=True)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            pred = sample["pred_normal_map"]["data"].float()
            if self.output_dir is not None:
                name = osp.splitext(osp.basename(sample["img_path"]))[0]
                mmcv.imwrite(mmcv.rgb2bgr(normals_image(pred)), osp.join(self.output_dir, f"{name}.png"))
            gt = sample["gt_normal_map"]["data"].to(pred.device).float()
            errors = angular_errors(pred, gt)
            if errors.numel() == 0:
                continue
            stats = dict(mean=errors.mean(), median=errors.median(), rmse=errors.pow(2).mean().sqrt())
            stats.update({f"a{t:g}": (errors < t).float().mean() for t in THRESHOLDS})
            self.results.append({k: float(v) for k, v in stats.items()})

    def compute_metrics(self, results: list) -> Dict[str, float]:
        if not results:
            return {key: math.nan for key in ("mean", "median", "rmse", *(f"a{t:g}" for t in THRESHOLDS))}
        return {key: float(np.mean([r[key] for r in results])) for key in results[0]}
