"""Feature extractors built on timm (DINOv2, DINO, CLIP, SigLIP, ...)."""
from anyup_dense.backbones.timm_vit import TimmViT, find_local_weights

__all__ = ["TimmViT", "find_local_weights"]
