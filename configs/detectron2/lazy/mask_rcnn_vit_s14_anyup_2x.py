"""Mask R-CNN, frozen DINOv2 ViT-S/14, AnyUp 2x (stride 8) -- the LazyConfig twin of
../COCO-InstanceSegmentation/mask_rcnn_vit_s14_anyup_2x.yaml.

Published row: none; AnyUp was not evaluated on detection. Same protocol as FeatSharp Tab. 1
(COCO 2017 val; secondary summaries of the paper, see docs/detectron2.md), e.g. 'FeatSharp 2x':
RADIOv2.5-L AP* 54.83, AP_S 34.72, AP_M 59.40, AP_L 74.40. Reports AP, APs, APm, APl (bbox, segm).
How our setup differs: DINOv2 ViT-S/14 (frozen) instead of RADIOv2.5-L / SigLIP2; Mask R-CNN
instead of DINO-DETR; our schedule (3x, AdamW 1e-4). Unlike the yacs configs, the box and mask
heads use the channel-first LayerNorm, as ViTDet does.

Overrides (``tools/train_net.py --config-file THIS key=value ...``; ``null`` and ``None`` both
mean None here, see anyup_dense/integrations/detectron2/lazy.py). Other upsamplers, e.g.
``model.backbone.upsampler.name=bilinear model.backbone.upsampler.pretrained=null``; the
baseline: ``model.backbone.upsampler=null model.backbone.factor=1``; random weights, nothing
downloaded: ``model.backbone.vit.pretrained=null model.backbone.upsampler.pretrained=null``.
"""
from detectron2 import model_zoo
from detectron2.config import LazyCall as L
import torch

from anyup_dense.integrations.detectron2 import LayerNorm2d, UpsampledViTBackbone, layer_decay_param_groups
from anyup_dense.integrations.detectron2.lazy import lazy_upsampler, lazy_vit

model = model_zoo.get_config("common/models/mask_rcnn_fpn.py").model
model.backbone = L(UpsampledViTBackbone)(
    vit=L(lazy_vit)(model_name="vit_small_patch14_dinov2.lvd142m", pretrained=True, frozen=True),
    upsampler=L(lazy_upsampler)(name="anyup", pretrained="anyup_multi_backbone"),
    factor=2,
    upsampler_frozen=True,
    out_channels=256,
    levels=[2, 3, 4, 5],
    top_block="maxpool",
    norm="LN",
    pixel_mean="${..pixel_mean}",
    pixel_std="${..pixel_std}",
    input_format="${..input_format}",
)
model.roi_heads.box_head.conv_dims = [256, 256, 256, 256]
model.roi_heads.box_head.fc_dims = [1024]
model.roi_heads.box_head.conv_norm = LayerNorm2d
model.roi_heads.mask_head.conv_norm = LayerNorm2d

dataloader = model_zoo.get_config("common/data/coco.py").dataloader
dataloader.evaluator.use_fast_impl = False  # the stub _C has no fast COCO evaluation

optimizer = L(torch.optim.AdamW)(
    params=L(layer_decay_param_groups)(base_lr="${..lr}", weight_decay="${..weight_decay}", layer_decay=1.0),
    lr=1e-4,
    weight_decay=0.1,
    betas=(0.9, 0.999),
)
lr_multiplier = model_zoo.get_config("common/coco_schedule.py").lr_multiplier_3x

train = model_zoo.get_config("common/train.py").train
train.max_iter = 270000
train.eval_period = 0
train.output_dir = "./output/lazy_mask_rcnn_vit_s14_anyup_2x"
