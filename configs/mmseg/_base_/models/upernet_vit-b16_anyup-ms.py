# End-to-end model: timm ViT-B/16 (trainable) -> AnyUp neck emitting strides 4/8/16/32
# (trainable, frozen=False) -> UPerHead + FCN auxiliary head. The ViT's own normalisation
# (mean = std = 0.5) is the data preprocessor's, so the neck converts it to ImageNet's.
norm_cfg = dict(type='SyncBN', requires_grad=True)
img_mean = [127.5, 127.5, 127.5]
img_std = [127.5, 127.5, 127.5]
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=img_mean,
    std=img_std,
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=(512, 512))
model = dict(
    type='GuidedEncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='TimmViT',
        model_name='vit_base_patch16_224.augreg2_in21k_ft_in1k',
        pretrained=True,
        out_indices=(-1, ),
        norm=True,
        frozen=False),
    neck=dict(
        type='AnyUpNeck',
        pretrained='anyup_multi_backbone',
        out_strides=(4, 8, 16, 32),
        frozen=False,
        checkpoint_encoders=True,  # recompute AnyUp's full-resolution encoders in backward
        image_norm=dict(mean=img_mean, std=img_std)),
    decode_head=dict(
        type='UPerHead',
        in_channels=[768, 768, 768, 768],
        in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6),
        channels=512,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=dict(
        type='FCNHead',
        in_channels=768,
        in_index=2,
        channels=256,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)),
    train_cfg=dict(),
    test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)))
