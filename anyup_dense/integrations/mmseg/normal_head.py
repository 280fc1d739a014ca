"""Surface-normal probe: a 1x1 conv to xyz (+ concentration kappa) and its angular loss."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.utils import resize
from mmseg.registry import MODELS

from anyup_dense.integrations.mmseg.depth_head import sum_losses

VALID_NORM = 0.5  # ground-truth vectors shorter than this mark invalid pixels (encoded as 0)


def valid_normals(gt: torch.Tensor) -> torch.Tensor:
    """gt [B,3,H,W] -> bool mask [B,H,W] of pixels with a ground-truth normal."""
    return gt.norm(dim=1) > VALID_NORM


@MODELS.register_module()
class AngularLoss(nn.Module):
    """Angular loss between predicted [B,3(+1),H,W] and ground-truth [B,3,H,W] normals,
    averaged over valid pixels.

    ``uncertainty_aware=False``: mean angle (radians) between the normalised vectors.
    ``uncertainty_aware=True``: the prediction carries a 4th channel kappa (concentration,
    ``elu + 1 + 0.01``) and the loss is the negative log-likelihood of Bae et al. (2021),
    ``-log(kappa^2 + 1) + kappa * angle + log(1 + exp(-kappa * pi))``, as in Probe3D.
    """

    def __init__(self, uncertainty_aware: bool = False, loss_weight: float = 1.0, eps: float = 1e-6,
                 loss_name: str = "loss_normal"):
        super().__init__()
        self.uncertainty_aware = uncertainty_aware
        self.loss_weight = loss_weight
        self.eps = eps
        self._loss_name = loss_name

    @property
    def loss_name(self) -> str:
        return self._loss_name

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        mask = valid_normals(target)
        cos = (F.normalize(pred[:, :3], dim=1) * F.normalize(target, dim=1)).sum(dim=1)
        angle = torch.acos(cos.clamp(-1 + self.eps, 1 - self.eps))
        if self.uncertainty_aware:
            kappa = F.elu(pred[:, 3]) + 1.0 + 0.01
            angle = -torch.log(kappa ** 2 + 1) + kappa * angle + torch.log1p(torch.exp(-kappa * math.pi))
        if not mask.any():
            return pred.sum() * 0.0
        return self.loss_weight * angle[mask].mean()


@MODELS.register_module()
class NormalProbeHead(BaseDecodeHead):
    """``[B, C, H, W] -> [B, 3 (+1), H, W]`` by one 1x1 conv; the loss (default
    :class:`AngularLoss`) sees the raw output, prediction returns unit xyz vectors resized
    to the image. With ``uncertainty_aware=True`` a 4th channel (kappa) is predicted and
    passed to the loss."""

    def __init__(self, in_channels: int, uncertainty_aware: bool = False, loss_decode=None, **kwargs):
        outputs = 4 if uncertainty_aware else 3
        if loss_decode is None:
            loss_decode = dict(type="AngularLoss", uncertainty_aware=uncertainty_aware)
        kwargs.setdefault("dropout_ratio", 0.0)
        super().__init__(in_channels=in_channels, channels=in_channels, num_classes=outputs, out_channels=outputs,
                         loss_decode=loss_decode, **kwargs)

    def forward(self, inputs) -> torch.Tensor:
        return self.cls_seg(self._transform_inputs(inputs))

    def predict_by_feat(self, outputs: torch.Tensor, batch_img_metas) -> torch.Tensor:
        normals = super().predict_by_feat(outputs[:, :3], batch_img_metas)
        return F.normalize(normals, dim=1)

    def loss_by_feat(self, outputs: torch.Tensor, batch_data_samples) -> dict:
        """outputs [B,3|4,h,w] vs stacked ``gt_normal_map`` [B,3,H,W]."""
        gt = torch.stack([sample.gt_normal_map.data for sample in batch_data_samples])
        pred = resize(outputs, size=gt.shape[2:], mode="bilinear", align_corners=self.align_corners)
        return sum_losses(self.loss_decode, pred, gt)
