# Protocol "probe3d_normals": Probe3D surface normals on NYUv2 as AnyUp uses it (mbanani/probe3d
# a1f1464; AnyUp Tab. 3). Use with datasets/nyu-normals_224.py. As "probe3d_depth" (224, AdamW 5e-4,
# 10 epochs, warm-up + cosine) but a 1x1 conv to xyz + kappa with Bae et al.'s uncertainty-aware
# angular loss; metrics: angular RMSE and the fractions under 11.25/22.5/30 degrees.
_base_ = [
    '../models/vit-s14-dinov2_normal-probe.py', '../schedules/probe3d_adamw_10e.py', '../default_runtime.py'
]
model = dict(neck=dict(_delete_=True, type='UpsamplerNeck', upsampler='bilinear'))
