# End-to-end fine-tuning example: ViT-B/16 + trainable multi-stride AnyUp neck (strides
# 4/8/16/32) + UPerHead on stock ADE20K (150 classes), 512x512 crops, 8 GPUs x batch 2.
# Target: none published (an example recipe, not a paper row; compare with the same model
# using neck=dict(type='BilinearNeck', out_strides=(4, 8, 16, 32))).
_base_ = [
    '../_base_/models/upernet_vit-b16_anyup-ms.py', '../_base_/datasets/ade20k_512x512.py',
    '../_base_/schedules/finetune_adamw_160k.py', '../_base_/default_runtime.py'
]
