# Probe3D-style surface-normal probe: frozen DINOv2 ViT-S/14 -> neck -> 1x1 conv to xyz + kappa
# -> uncertainty-aware angular loss (Bae et al. 2021), as Probe3D's snorm config.
_base_ = './vit-s14-dinov2_depth-probe.py'
model = dict(
    type='GuidedNormalEstimator',
    decode_head=dict(
        _delete_=True,
        type='NormalProbeHead',
        in_channels=384,
        uncertainty_aware=True,
        align_corners=False))
