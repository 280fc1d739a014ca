# FeatUp's JBU stack with the official DINOv2 weights (mhamilton723/FeatUp), frozen.
# _delete_: a leaf setting model.neck to this dict replaces the model's neck instead of merging into it.
neck = dict(_delete_=True, type='FeatUpNeck', backbone='dinov2', pretrained=True)
