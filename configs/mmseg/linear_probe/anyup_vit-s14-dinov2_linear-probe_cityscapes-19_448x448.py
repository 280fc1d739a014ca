# anyup neck, DINOv2 ViT-S/14 linear probe, cityscapes-19, 448x448 (JAFAR/AnyUp protocol).
# Target: none published by AnyUp (a secondary re-run, UPLiFT, reports mIoU 61.33).
_base_ = [
    '../_base_/models/vit-s14-dinov2_linear-probe.py', '../_base_/necks/anyup.py',
    '../_base_/datasets/cityscapes-19_448.py', '../_base_/schedules/seg-probe_adamw-cosine_20e.py',
    '../_base_/default_runtime.py'
]
model = dict(neck={{_base_.neck}}, decode_head=dict(num_classes={{_base_.num_classes}}))
