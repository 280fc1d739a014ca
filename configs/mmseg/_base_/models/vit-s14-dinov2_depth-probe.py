# Probe3D-style depth probe: frozen DINOv2 ViT-S/14 -> neck -> 1x1 conv to 256 depth bins
# over [1e-3, 10] m (expected depth) -> SiLog loss. Probe3D's extra gradient loss is omitted.
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    size_divisor=14,  # the patch size: inputs are padded to whole patches
    pad_val=0,
    seg_pad_val=0)
model = dict(
    type='GuidedDepthEstimator',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='TimmViT',
        model_name='vit_small_patch14_dinov2.lvd142m',
        pretrained=True,
        out_indices=(-1, ),
        norm=True,
        frozen=True),
    neck=dict(type='BilinearNeck'),
    decode_head=dict(
        type='DepthProbeHead',
        in_channels=384,
        mode='bins',
        num_bins=256,
        min_depth=1e-3,
        max_depth=10.0,
        align_corners=False,
        loss_decode=dict(type='SiLogLoss', loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
