"""``NormalMetric``: angular error of predicted surface normals (Probe3D protocol)."""
import math
from typing import Dict, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric
from mmseg.registry import METRICS

from anyup_dense.integrations.mmseg.normal_head import valid_normals

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
    without a valid pixel are skipped.
    """

    default_prefix = "normal"

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            pred = sample["pred_normal_map"]["data"].float()
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
