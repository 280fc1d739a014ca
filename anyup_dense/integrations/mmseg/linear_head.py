"""The JAFAR/AnyUp segmentation probe: one 1x1 convolution (with bias) on the features."""
import torch
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS


@MODELS.register_module()
class LinearProbeHead(BaseDecodeHead):
    """``[B, in_channels, H, W] -> [B, num_classes, H, W]`` logits by a single 1x1 conv.

    No norm, no dropout (``dropout_ratio`` defaults to 0). Logits that are not at the label
    size are bilinearly resized by the base class (loss and prediction), as in the protocol.
    Other ``BaseDecodeHead`` arguments (``loss_decode``, ``in_index``, ``input_transform``,
    ``align_corners``, ...) work as usual.
    """

    def __init__(self, in_channels, num_classes: int, dropout_ratio: float = 0.0, **kwargs):
        channels = sum(in_channels) if isinstance(in_channels, (list, tuple)) else in_channels
        super().__init__(in_channels=in_channels, channels=channels, num_classes=num_classes,
                         dropout_ratio=dropout_ratio, **kwargs)

    def forward(self, inputs) -> torch.Tensor:
        return self.cls_seg(self._transform_inputs(inputs))
