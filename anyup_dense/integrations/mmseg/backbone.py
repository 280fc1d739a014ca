"""``TimmViT`` in mmseg's MODELS registry: any timm ViT as a (frozen) mmseg backbone.

    backbone=dict(type='TimmViT', model_name='vit_small_patch14_dinov2.lvd142m',
                  pretrained=True, out_indices=(-1,))

It is :class:`anyup_dense.backbones.TimmViT` unchanged (image [B,3,H,W] -> tuple of
[B, C, H/p, W/p] patch maps without prefix/register tokens, frozen by default, dynamic input
size, ``mean``/``std``/``patch_size`` recorded); the subclass only gives it a registry entry
without clashing with the framework-free class name.
"""
from mmseg.registry import MODELS

from anyup_dense.backbones import TimmViT


@MODELS.register_module(name="TimmViT")
class MMSegTimmViT(TimmViT):
    """Registered as ``'TimmViT'``. Args as :class:`anyup_dense.backbones.TimmViT`:
    ``model_name``, ``pretrained`` (None, True = timm weights, or a local path),
    ``out_indices``, ``norm``, ``frozen`` (default True) and timm ``create_model`` kwargs."""
