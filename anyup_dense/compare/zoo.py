"""Build every registered upsampler for one ViT backbone, with the arguments each needs.

    entry = build_for_backbone("jafar", vit, image_size=224, allow_download=False)
    out = entry.upsampler(features, image, **entry.call_kwargs)

Weights: the official release matching the backbone when one exists and is either in the
torch.hub cache already or ``allow_download`` is set (a failed download falls back to random
weights and says why); otherwise random weights. ``entry.weights`` says which.
"""
import sys
from dataclasses import dataclass, field
from typing import Dict, Optional

import torch.nn as nn

from anyup_dense.backbones.featurizer import backbone_featurizer
from anyup_dense.checkpoints import Release, cached_release, release_for_backbone
from anyup_dense.registry import UPSAMPLERS
from anyup_dense.upsamplers import build_upsampler
from anyup_dense.upsamplers.featup_implicit_layers import window_count

# Per-image fitting methods and their official fit lengths; on CPU they run CPU_FIT_STEPS steps
# (FeatUp implicit: about 12 s of CPU per step at 224, so one step only shows the pipeline).
OFFICIAL_FIT_STEPS = {"upsample_anything": 51, "featup_implicit": 1200}
CPU_FIT_STEPS = {"upsample_anything": 10, "featup_implicit": 1}


@dataclass
class Entry:
    """A built upsampler, what its forward needs besides (features, image), and notes."""
    name: str
    upsampler: nn.Module
    weights: str
    call_kwargs: dict = field(default_factory=dict)
    notes: str = ""


def release_table(name: str) -> Dict[str, Release]:
    """The release table of registered upsampler ``name``: the ``RELEASES`` of the module that
    defines its builder (empty when it has none)."""
    return getattr(sys.modules[UPSAMPLERS.get(name).__module__], "RELEASES", {})


def release_for(name: str, backbone: str) -> Optional[str]:
    """The official release of upsampler ``name`` for timm ``backbone`` (one trained on it, else
    a feature-agnostic one), or ``None``."""
    release = release_for_backbone(release_table(name), backbone)
    return None if release is None else release.name


def cached(name: str, release: str) -> bool:
    """Whether ``release`` of upsampler ``name`` is in torch.hub's cache (never downloads)."""
    return cached_release(release_table(name)[release]) is not None


def architecture_kwargs(name: str, dim: int, patch_size: int, image_size: int,
                        fit_steps: Optional[int] = None) -> dict:
    """Constructor arguments of upsampler ``name`` for a backbone of ``dim`` channels and patch
    ``patch_size`` at ``image_size`` (FeatSharp's featurizer resolution); ``fit_steps`` sets the
    per-image fit length of fitting methods (upsample_anything)."""
    kwargs = {}
    if name == "featsharp":  # output in the featurizer's space, not PHI-S space, so it stays comparable
        kwargs = dict(dim=dim, model_resolution=image_size, patch_size=patch_size, denormalize=True)
    elif name in ("featup_jbu", "loftup"):
        kwargs = dict(dim=dim)
    elif name == "jafar":
        kwargs = dict(v_dim=dim)
    elif name == "uplift":
        kwargs = dict(in_channels=dim, patch_size=patch_size)
    elif name == "featup_implicit":  # the widest downsampler window (official 29) that tiles this grid
        grid = image_size // patch_size
        kernel = max(k for k in range(1, 30) if window_count(image_size, k, grid) == grid)
        kwargs = dict(model_resolution=image_size, proj_dim=min(128, dim), kernel_size=kernel)
    if name in OFFICIAL_FIT_STEPS and fit_steps is not None:
        kwargs["steps"] = fit_steps
    return kwargs


def build_for_backbone(name: str, vit: nn.Module, image_size: int, allow_download: bool = False,
                       fit_steps: Optional[int] = None, progress: bool = False) -> Entry:
    """Upsampler ``name`` for ``vit`` (a :class:`~anyup_dense.backbones.TimmViT`) at ``image_size``.

    ``fit_steps`` overrides the per-image fit length of fitting methods (``upsample_anything``)."""
    kwargs = architecture_kwargs(name, vit.embed_dim, vit.patch_size, image_size, fit_steps)
    notes = [f"{fit_steps} fit steps (official {OFFICIAL_FIT_STEPS[name]})"] if "steps" in kwargs else []
    release = release_for(name, vit.model_name)
    weights, upsampler = "random (no official release for this backbone)", None
    if release is not None:
        if cached(name, release) or allow_download:
            try:
                upsampler = build_upsampler(name, pretrained=release, progress=progress, **kwargs)
                weights = release
            except OSError as error:
                weights = f"random ({release} could not be fetched: {type(error).__name__})"
        else:
            weights = f"random ({release} not cached; pass --download)"
    if upsampler is None:
        upsampler = build_upsampler(name, **kwargs)
        if not any(p.numel() for p in upsampler.parameters()):
            weights = "none (has no weights)"
    call_kwargs = dict(featurizer=backbone_featurizer(vit)) if getattr(upsampler, "requires_featurizer", False) else {}
    if name == "featsharp":
        notes.append("ViT as featurizer (1 + 4 passes)")
    return Entry(name, upsampler.eval(), weights, call_kwargs, "; ".join(notes))
