# Protocol "anyup": the JAFAR segmentation probe with AnyUp's fix (AnyUp README and App. C;
# arXiv 2510.12764 v2, Tab. 2). Frozen DINOv2 ViT-S/14 -> upsampler (the neck) -> 1x1 conv;
# AdamW lr 5e-4, betas (0.9, 0.999), wd 1e-5; 20 epochs; ONE cosine over the run stepped once per
# epoch (T_max = 20 epochs), no warm-up. Data (with a datasets/*_448.py piece): 448 centre crops,
# batch 2, flip. Differs from "jafar" only in the scheduler step; from "naf" only in stepping per
# epoch instead of per iteration (same curve sampled at epoch starts).
_base_ = [
    '../models/vit-s14-dinov2_linear-probe.py', '../schedules/seg-probe_adamw-cosine_20e.py',
    '../default_runtime.py'
]
model = dict(neck=dict(_delete_=True, type='UpsamplerNeck', upsampler='bilinear'))
