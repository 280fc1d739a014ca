# JAFAR/AnyUp linear probe: frozen DINOv2 ViT-S/14 (last block, final norm) -> neck
# (bilinear by default; the leaf config sets it) -> one 1x1 conv -> CE ignoring 255.
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    size_divisor=14,  # the patch size: inputs are padded to whole patches
    pad_val=0,
    seg_pad_val=255)
model = dict(
    type='GuidedEncoderDecoder',
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
        type='LinearProbeHead',
        in_channels=384,
        num_classes=150,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
