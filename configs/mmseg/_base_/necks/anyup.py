# AnyUp with the paper's DINOv2 ViT-S/14 weights (wimmerth/anyup release "anyup_paper"), frozen.
# _delete_: a leaf setting model.neck to this dict replaces the model's neck instead of merging into it.
neck = dict(_delete_=True, type='AnyUpNeck', pretrained='anyup_paper')
