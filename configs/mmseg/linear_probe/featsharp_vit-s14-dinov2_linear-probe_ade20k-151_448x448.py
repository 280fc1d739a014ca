# featsharp neck, DINOv2 ViT-S/14 linear probe, ade20k-151, 448x448 (JAFAR/AnyUp protocol).
# Target: none published: FeatSharp reports no result under this protocol and ships no weights.
_base_ = [
    '../_base_/models/vit-s14-dinov2_linear-probe.py', '../_base_/necks/featsharp.py',
    '../_base_/datasets/ade20k-151_448.py', '../_base_/schedules/seg-probe_adamw-cosine_20e.py',
    '../_base_/default_runtime.py'
]
model = dict(neck={{_base_.neck}}, decode_head=dict(num_classes={{_base_.num_classes}}))
