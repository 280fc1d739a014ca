"""Feature extractors built on timm (DINOv2, DINO, CLIP, SigLIP, ...)."""
from anyup_dense.backbones.timm_vit import IMAGENET_MEAN, IMAGENET_STD, TimmViT, find_local_weights

__all__ = ["TimmViT", "find_local_weights", "IMAGENET_MEAN", "IMAGENET_STD"]
