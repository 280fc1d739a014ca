"""Segmentors that hand the preprocessed image (and the backbone) to a neck that asks for it.

They differ from mmseg's ``EncoderDecoder`` / ``DepthEstimator`` only in ``extract_feat``,
which every path (loss, whole and slide inference, TTA) goes through, so each crop of a
sliding window gets its own crop as guidance. A neck asks by ``requires_image = True``; any
other neck is called exactly as in the stock segmentor. At build time they hand the data
preprocessor's normalisation to a neck that takes it (``adopt_preprocessor_norm``), so the
upsampler's guidance is ImageNet-normalised RGB whatever the preprocessor's values, and
refuse heads that do not match the neck and input sizes the backbone refuses (``build_checks``).
"""
from typing import List, Optional, Sequence

import torch
import torch.nn as nn
from mmengine.structures import PixelData
from mmseg.models.segmentors import DepthEstimator, EncoderDecoder
from mmseg.registry import MODELS

from anyup_dense.integrations.mmseg.build_checks import check_head_channels, check_patch_multiples
from anyup_dense.integrations.mmseg.guidance import preprocessor_norm


def guided_neck(neck: nn.Module, maps: Sequence[torch.Tensor], image: torch.Tensor, backbone: nn.Module):
    """``neck(maps, image=image, backbone=backbone)`` for necks that ask for the image,
    ``neck(maps)`` otherwise. ``image`` is the preprocessed batch [B,3,H,W]."""
    if getattr(neck, "requires_image", False):
        return neck(maps, image=image, backbone=backbone)
    return neck(maps)


def connect_guided_neck(segmentor: nn.Module) -> None:
    """Build-time set-up of a Guided* segmentor's neck: its image normalisation from the
    segmentor's data preprocessor (when both support it); then the build-time checks of
    heads against the neck and of input sizes against the patch (``build_checks``)."""
    check_head_channels(segmentor)
    check_patch_multiples(segmentor)
    neck = getattr(segmentor, "neck", None)
    norm = preprocessor_norm(segmentor.data_preprocessor)
    if neck is not None and norm is not None and hasattr(neck, "adopt_preprocessor_norm"):
        neck.adopt_preprocessor_norm(norm)


@MODELS.register_module()
class GuidedEncoderDecoder(EncoderDecoder):
    """``EncoderDecoder`` whose neck may see the input image; same arguments."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        connect_guided_neck(self)

    def extract_feat(self, inputs: torch.Tensor) -> List[torch.Tensor]:
        """inputs [B,3,H,W] -> backbone maps, passed through the (guided) neck."""
        x = self.backbone(inputs)
        if self.with_neck:
            x = guided_neck(self.neck, x, inputs, self.backbone)
        return x


@MODELS.register_module()
class GuidedDepthEstimator(DepthEstimator):
    """``DepthEstimator`` whose neck may see the input image; same arguments."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        connect_guided_neck(self)

    def extract_feat(self, inputs: torch.Tensor, batch_img_metas: Optional[List[dict]] = None):
        """inputs [B,3,H,W] -> backbone maps, passed through the (guided) neck. Backbones with
        ``class_embed_select`` get ``(inputs, category_ids)`` as in the stock estimator."""
        backbone_inputs = inputs
        if getattr(self.backbone, "class_embed_select", False) and isinstance(batch_img_metas, list) \
                and "category_id" in batch_img_metas[0]:
            cat_ids = torch.tensor([meta["category_id"] for meta in batch_img_metas], device=inputs.device)
            backbone_inputs = (inputs, cat_ids)
        x = self.backbone(backbone_inputs)
        if self.with_neck:
            x = guided_neck(self.neck, x, inputs, self.backbone)
        return x


@MODELS.register_module()
class GuidedNormalEstimator(GuidedDepthEstimator):
    """``GuidedDepthEstimator`` for surface normals: the head predicts [B,3,H,W] unit
    vectors; results are re-normalised after resizing, the x component is negated for
    horizontally flipped inputs, and they are stored as ``pred_normal_map``."""

    def postprocess_result(self, normals: torch.Tensor, data_samples=None):
        samples = super().postprocess_result(normals, data_samples)
        for sample in samples:
            pred = sample.pred_depth_map.data
            if sample.metainfo.get("flip") and sample.metainfo.get("flip_direction") == "horizontal":
                pred = pred * pred.new_tensor([-1.0, 1.0, 1.0]).view(3, 1, 1)
            pred = torch.nn.functional.normalize(pred, dim=0)
            del sample.pred_depth_map
            sample.set_data(dict(pred_normal_map=PixelData(data=pred)))
        return samples
