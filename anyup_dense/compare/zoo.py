"""Build every registered upsampler for one ViT backbone, with the arguments each needs.

    entry = build_for_backbone("jafar", vit, image_size=224, allow_download=False)
    out = entry.upsampler(features, image, **entry.call_kwargs)

Weights: the official release matching the backbone when one exists and is either in the
torch.hub cache already or ``allow_download`` is set (a failed download falls back to random
weights and says why); otherwise random weights. ``entry.weights`` says which.
"""
import os
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

import torch
import torch.nn as nn

from anyup_dense.registry import build_upsampler
from anyup_dense.upsamplers import anyup, jafar, loftup, naf, uplift
from anyup_dense.upsamplers.checkpoint import hub_cache_path, url_file_name
from anyup_dense.upsamplers.featup_implicit_layers import window_count

DINOV2_S = "vit_small_patch14_dinov2.lvd142m"
DINOV2_S_REG = "vit_small_patch14_reg4_dinov2.lvd142m"
DINOV2_B = "vit_base_patch14_dinov2.lvd142m"
DINOV2_B_REG = "vit_base_patch14_reg4_dinov2.lvd142m"

# upsampler -> {timm backbone (None: any) -> release name}
RELEASE_FOR: Dict[str, Dict[Optional[str], str]] = {
    "anyup": {None: "anyup_paper"},  # feature-agnostic
    "naf": {None: "naf_release"},  # feature-agnostic
    "jafar": {name: name for name in jafar.RELEASES},
    "loftup": {DINOV2_S: "loftup_dinov2s", DINOV2_S_REG: "loftup_dinov2s_reg", DINOV2_B: "loftup_dinov2b",
               DINOV2_B_REG: "loftup_dinov2b_reg"},
    "featup_jbu": {DINOV2_S: "dinov2"},
    "uplift": {DINOV2_S: "dinov2-s14"},
}
# upsampler -> the torch.hub cache file name of one of its releases
_CACHE_FILE: Dict[str, Callable[[str], str]] = {
    "anyup": lambda name: url_file_name(anyup.RELEASES[name]),
    "naf": lambda name: url_file_name(naf.RELEASES[name]),
    "jafar": lambda name: url_file_name(jafar.RELEASES[name]),
    "loftup": lambda name: loftup.RELEASE_FILE_NAMES[name],
    "featup_jbu": lambda name: f"featup_{name}_jbu_stack_cocostuff.ckpt",
    "uplift": lambda name: url_file_name(uplift.RELEASES[name]),
}
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


def release_for(name: str, backbone: str) -> Optional[str]:
    """The official release of upsampler ``name`` for timm ``backbone``, or ``None``."""
    table = RELEASE_FOR.get(name, {})
    return table.get(backbone, table.get(None))


def cached(name: str, release: str) -> bool:
    """Whether ``release`` of upsampler ``name`` is in torch.hub's cache (never downloads)."""
    return os.path.isfile(hub_cache_path(_CACHE_FILE[name](release)))


def _featurizer(vit: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """ImageNet-normalised crops [N,3,R,R] -> the ViT's last map [N,C,R/p,R/p] (FeatSharp's tiles)."""
    imagenet_mean = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
    imagenet_std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    mean, std = torch.tensor(vit.mean).view(1, 3, 1, 1), torch.tensor(vit.std).view(1, 3, 1, 1)

    def featurize(crops: torch.Tensor) -> torch.Tensor:
        rgb = crops * imagenet_std.to(crops) + imagenet_mean.to(crops)
        return vit((rgb - mean.to(crops)) / std.to(crops))[-1]

    return featurize


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
    call_kwargs = dict(featurizer=_featurizer(vit)) if getattr(upsampler, "requires_featurizer", False) else {}
    if name == "featsharp":
        notes.append("ViT as featurizer (1 + 4 passes)")
    return Entry(name, upsampler.eval(), weights, call_kwargs, "; ".join(notes))
