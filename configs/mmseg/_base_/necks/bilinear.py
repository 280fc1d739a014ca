# Bilinear interpolation of the ViT map to the image size (training-free baseline).
# _delete_: a leaf setting model.neck to this dict replaces the model's neck instead of merging into it.
neck = dict(_delete_=True, type='BilinearNeck')
