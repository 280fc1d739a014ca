"""``AlignedDepthMetric``: mmseg's absolute depth metrics plus Probe3D's scale-and-shift
aligned ("relative") ones, per image, then averaged over images."""
from collections import defaultdict
from typing import Dict, List, Tuple

import numpy as np
import torch
from mmseg.evaluation.metrics import DepthMetric
from mmseg.registry import METRICS


def align_scale_and_shift(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """``s * pred + t`` with (s, t) the least-squares fit of ``pred`` to ``gt`` (1-D tensors
    of the valid pixels), solved in float64. A constant prediction gets s = 0, t = mean(gt)."""
    p, g = pred.double(), gt.double()
    p_centred = p - p.mean()
    variance = (p_centred * p_centred).sum()
    scale = (p_centred * (g - g.mean())).sum() / variance if variance > 0 else p.new_zeros(())
    shift = g.mean() - scale * p.mean()
    return (scale * p + shift).to(pred.dtype)


@METRICS.register_module()
class AlignedDepthMetric(DepthMetric):
    """Every metric of mmseg's ``DepthMetric`` (``d1``, ``rmse``, ... on the prediction as
    is), and the same metrics with an ``_aligned`` suffix after a per-image least-squares
    scale and shift of the prediction to the ground truth (Probe3D's scale-invariant
    evaluation; AnyUp Tab. 3 "Depth (Relative)"). Aligned predictions are clamped below at
    ``min_depth_eval`` (or 1e-3 when that is 0) so that the log metrics stay defined.
    """

    def compute_metrics(self, results: List[Tuple[torch.Tensor, torch.Tensor]]) -> Dict[str, float]:
        metrics = defaultdict(list)
        floor = self.min_depth_eval if self.min_depth_eval > 0 else 1e-3
        for gt_depth, pred_depth in results:
            aligned = align_scale_and_shift(pred_depth, gt_depth).clamp(min=floor)
            for suffix, prediction in (("", pred_depth), ("_aligned", aligned)):
                for key, value in self._calc_all_metrics(gt_depth, prediction).items():
                    metrics[key + suffix].append(value)
        return {key: float(np.mean(values)) for key, values in metrics.items()
                if key.replace("_aligned", "") in self.metrics}
