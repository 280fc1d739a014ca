# anyup neck, DINOv2 ViT-S/14 normal probe, NYUv2, 224x224 (Probe3D protocol as used by AnyUp).
# Target: RMSE 31.17 deg / a11.25 0.29 / a22.5 0.57 / a30 0.69, AnyUp Tab. 3 (arXiv 2510.12764 v2; Probe3D protocol on NYUv2 at 224).
_base_ = [
    '../_base_/models/vit-s14-dinov2_normal-probe.py', '../_base_/necks/anyup.py',
    '../_base_/datasets/nyu-normals_224.py', '../_base_/schedules/probe3d_adamw_10e.py',
    '../_base_/default_runtime.py'
]
model = dict(neck={{_base_.neck}})
