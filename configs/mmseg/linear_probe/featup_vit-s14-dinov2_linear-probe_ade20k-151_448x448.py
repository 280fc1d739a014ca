# featup neck, DINOv2 ViT-S/14 linear probe, ade20k-151, 448x448 (JAFAR/AnyUp protocol).
# Target: mIoU 42.19 / Acc 75.57, AnyUp Tab. 2 (arXiv 2510.12764 v2; JAFAR protocol with the per-epoch cosine fix).
_base_ = [
    '../_base_/models/vit-s14-dinov2_linear-probe.py', '../_base_/necks/featup.py',
    '../_base_/datasets/ade20k-151_448.py', '../_base_/schedules/seg-probe_adamw-cosine_20e.py',
    '../_base_/default_runtime.py'
]
model = dict(neck={{_base_.neck}}, decode_head=dict(num_classes={{_base_.num_classes}}))
