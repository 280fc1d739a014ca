# Probe3D-style depth probe: frozen DINOv2 ViT-S/14 -> neck -> 1x1 conv to 256 depth bins
# over [1e-3, 10] m (expected depth) -> SiLog loss. Probe3D's extra gradient loss is omitted.
# Same backbone, neck and preprocessing as the linear probe; depth maps are padded with 0.
_base_ = './vit-s14-dinov2_linear-probe.py'
data_preprocessor = dict(seg_pad_val=0)
model = dict(
    type='GuidedDepthEstimator',
    data_preprocessor=data_preprocessor,
    decode_head=dict(
        _delete_=True,
        type='DepthProbeHead',
        in_channels=384,
        mode='bins',
        num_bins=256,
        min_depth=1e-3,
        max_depth=10.0,
        align_corners=False,
        loss_decode=dict(type='SiLogLoss', loss_weight=1.0)))
