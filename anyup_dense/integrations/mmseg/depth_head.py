"""Depth probes on (upsampled) features: linear, or Probe3D/AdaBins-style binned."""
import torch
import torch.nn.functional as F
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.utils import resize
from mmseg.registry import MODELS


@MODELS.register_module()
class DepthProbeHead(BaseDecodeHead):
    """``[B, C, H, W] -> depth [B, 1, H, W]`` in metres with one 1x1 conv.

    Args:
        mode: ``'linear'``: 1 output channel, depth = sigmoid(x) * max_depth;
            ``'bins'``: ``num_bins`` channels, weights = ReLU(x) + ``bin_eps`` normalised
            over bins, depth = sum(weights * centres), centres uniform in
            [min_depth, max_depth] (Probe3D's ``bindepth`` head; JAFAR uses ``bin_eps=0.1``).
        loss_decode: default ``SiLogLoss``; computed against ``gt_depth_map`` after
            bilinearly resizing the prediction to the label size.
    """

    def __init__(self, in_channels: int, mode: str = "bins", num_bins: int = 256, min_depth: float = 1e-3,
                 max_depth: float = 10.0, bin_eps: float = 0.1, loss_decode=dict(type="SiLogLoss"), **kwargs):
        if mode not in ("linear", "bins"):
            raise ValueError(f"mode must be 'linear' or 'bins', got {mode!r}")
        outputs = num_bins if mode == "bins" else 1
        kwargs.setdefault("dropout_ratio", 0.0)
        super().__init__(in_channels=in_channels, channels=in_channels, num_classes=outputs,
                         out_channels=outputs, threshold=0.0,  # unused; silences mmseg's binary-seg warning
                         loss_decode=loss_decode, **kwargs)
        self.mode = mode
        self.max_depth = max_depth
        self.bin_eps = bin_eps
        self.register_buffer("bin_centres", torch.linspace(min_depth, max_depth, num_bins).view(1, -1, 1, 1),
                             persistent=False)

    def forward(self, inputs) -> torch.Tensor:
        logits = self.cls_seg(self._transform_inputs(inputs))
        if self.mode == "linear":
            return torch.sigmoid(logits) * self.max_depth
        weights = F.relu(logits) + self.bin_eps
        weights = weights / weights.sum(dim=1, keepdim=True)
        return (weights * self.bin_centres.to(weights.dtype)).sum(dim=1, keepdim=True)

    def loss_by_feat(self, pred_depth: torch.Tensor, batch_data_samples) -> dict:
        """pred [B,1,h,w] vs stacked ``gt_depth_map`` [B,1,H,W]."""
        gt = torch.stack([sample.gt_depth_map.data for sample in batch_data_samples])
        pred = resize(pred_depth, size=gt.shape[2:], mode="bilinear", align_corners=self.align_corners)
        return sum_losses(self.loss_decode, pred, gt)


def sum_losses(loss_decode, pred: torch.Tensor, target: torch.Tensor) -> dict:
    """``{loss_name: sum of the losses with that name}`` for one loss module or a ModuleList."""
    modules = loss_decode if isinstance(loss_decode, torch.nn.ModuleList) else [loss_decode]
    losses = {}
    for loss in modules:
        losses[loss.loss_name] = losses.get(loss.loss_name, 0) + loss(pred, target)
    return losses
