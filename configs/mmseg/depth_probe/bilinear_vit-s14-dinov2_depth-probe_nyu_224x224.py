# bilinear neck, DINOv2 ViT-S/14 depth probe, NYUv2, 224x224 (Probe3D protocol as used by AnyUp).
# Target: abs RMSE 0.4925 / d1 0.8081 (scale-shift aligned: RMSE 0.3582 / d1 0.9112), AnyUp Tab. 3 (arXiv 2510.12764 v2; Probe3D protocol on NYUv2 at 224).
_base_ = [
    '../_base_/models/vit-s14-dinov2_depth-probe.py', '../_base_/necks/bilinear.py',
    '../_base_/datasets/nyu-depth_224.py', '../_base_/schedules/probe3d_adamw_10e.py',
    '../_base_/default_runtime.py'
]
model = dict(neck={{_base_.neck}})
