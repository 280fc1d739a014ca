# AnyUp with the paper's DINOv2 ViT-S/14 weights (wimmerth/anyup release "anyup_paper"), frozen.
neck = dict(type='AnyUpNeck', pretrained='anyup_paper')
