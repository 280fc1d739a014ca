# Protocol "probe3d_depth": Probe3D depth on NYUv2 as AnyUp uses it (mbanani/probe3d a1f1464;
# AnyUp Tab. 3). Use with datasets/nyu-depth_224.py. 224 centre crops, 1x1 conv to 256 depth bins
# over [1e-3, 10] m, SiLog loss; AdamW 5e-4, 10 epochs, batch 8, per-iteration linear warm-up over
# 1.5 epochs then cosine (schedules/probe3d_adamw_10e.py). Metrics per image then averaged, absolute
# and scale-and-shift aligned. Differs from Probe3D's default: linear head instead of DPT, no
# gradient loss, no colour jitter / random resized crop.
_base_ = [
    '../models/vit-s14-dinov2_depth-probe.py', '../schedules/probe3d_adamw_10e.py', '../default_runtime.py'
]
model = dict(neck=dict(_delete_=True, type='UpsamplerNeck', upsampler='bilinear'))
