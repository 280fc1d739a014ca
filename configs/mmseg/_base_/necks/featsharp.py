# FeatSharp (NVlabs/FeatSharp) at 2x for DINOv2 ViT-S/14 at 448 (32x32 -> 64x64, then bilinear to
# the image); the backbone is its featurizer (1 + 4 passes). FeatSharp ships no weights: add
# pretrained='<checkpoint>' (trained with the official harness) to evaluate a trained model.
# _delete_: a leaf setting model.neck to this dict replaces the model's neck instead of merging into it.
neck = dict(_delete_=True, type='FeatSharpNeck', dim=384, upsample_factor=2, model_resolution=448, patch_size=14)
