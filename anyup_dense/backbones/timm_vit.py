"""Frozen (or trainable) timm ViT feature extractors: image -> NCHW patch maps.

    vit = TimmViT("vit_small_patch14_dinov2.lvd142m", pretrained=None)
    maps = vit(image)          # tuple of [B, C, H/p, W/p], one per out_indices entry

Any timm ViT works (DINOv2, DINO, CLIP, SigLIP, ...). Inputs of any size divisible by the
patch size are accepted (position embeddings are interpolated). Prefix and register tokens
are dropped. ``mean``/``std`` record the normalisation the weights expect.
"""
import os
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

PretrainedArg = Union[None, bool, str, os.PathLike]


def _import_timm():
    try:
        import timm
    except ImportError as err:  # pragma: no cover - timm is a core dependency
        raise ImportError("anyup_dense.backbones needs timm: pip install timm") from err
    return timm


class TimmViT(nn.Module):
    """A timm ViT returning patch-token maps.

    Args:
        model_name: timm model name, e.g. ``"vit_small_patch14_dinov2.lvd142m"``.
        pretrained: ``None``/``False`` (random weights), ``True`` (timm's weights from the
            hub cache, downloaded if online), or a local checkpoint path (a timm/PyTorch
            state_dict, optionally under a ``"state_dict"`` or ``"model"`` key).
        out_indices: blocks whose outputs are returned (negative = from the end).
        norm: apply the final norm to each returned map (the AnyUp/FeatUp convention).
        frozen: eval mode and ``requires_grad=False`` for every parameter; ``train()``
            keeps it in eval mode.
        model_kwargs: passed to ``timm.create_model`` (e.g. ``img_size``, ``depth`` for tests).
    """

    def __init__(self, model_name: str, pretrained: PretrainedArg = None, out_indices: Sequence[int] = (-1,),
                 norm: bool = True, frozen: bool = True, **model_kwargs):
        super().__init__()
        timm = _import_timm()
        use_timm_weights = pretrained is True
        self.model = timm.create_model(model_name, pretrained=use_timm_weights, num_classes=0,
                                       dynamic_img_size=True, **model_kwargs)
        local = os.fspath(pretrained) if isinstance(pretrained, (str, os.PathLike)) else None
        if local is not None:
            load_backbone_weights(self.model, local)
        self.model_name = model_name
        self.weights = "timm" if use_timm_weights else (local or "random")
        depth = len(self.model.blocks)
        self.out_indices = tuple(i % depth for i in out_indices)
        self.norm = norm
        self.frozen = frozen
        cfg = self.model.pretrained_cfg
        self.mean = tuple(cfg.get("mean", IMAGENET_MEAN))
        self.std = tuple(cfg.get("std", IMAGENET_STD))
        self.patch_size = int(self.model.patch_embed.patch_size[0])
        self.embed_dim = int(self.model.embed_dim)
        if frozen:
            self.requires_grad_(False)
            self.model.eval()

    def train(self, mode: bool = True) -> "TimmViT":
        super().train(mode and not self.frozen)
        return self

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """image [B,3,H,W] (normalised with ``self.mean``/``self.std``; H, W divisible by the
        patch size) -> tuple of [B, embed_dim, H/p, W/p]."""
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"image must be [B, 3, H, W], got shape {tuple(image.shape)}")
        h, w = image.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"image size {h}x{w} must be divisible by the patch size {self.patch_size}")
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            maps = self.model.forward_intermediates(image, indices=list(self.out_indices), norm=self.norm,
                                                    output_fmt="NCHW", intermediates_only=True)
        return tuple(maps)


def load_backbone_weights(model: nn.Module, path: str) -> None:
    """Load a local timm-format checkpoint strictly (classifier-head keys are ignored); a
    checkpoint of another kind (e.g. an mmseg training checkpoint) is named in the error."""
    # imported here: anyup_dense.upsamplers imports this module
    from anyup_dense.upsamplers.checkpoint import load_state_dict_strict, read_checkpoint

    if not os.path.isfile(path):
        raise FileNotFoundError(f"backbone weights {path!r} do not exist")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        state = read_checkpoint(path, "backbone weights")
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    state = {k: v for k, v in state.items() if not k.startswith("head.")}
    load_state_dict_strict(model, state, source=f"backbone weights {path!r}")


def find_local_weights(model_name: str) -> Optional[str]:
    """``$ANYUP_DENSE_BACKBONE_WEIGHTS`` if set, else timm's Hugging Face cache entry for
    ``model_name`` if one was downloaded before; ``None`` when nothing is found locally."""
    env = os.environ.get("ANYUP_DENSE_BACKBONE_WEIGHTS")
    if env:
        return env
    timm = _import_timm()
    hub_id = timm.models.get_pretrained_cfg(model_name).hf_hub_id
    if not hub_id:
        return None
    cache = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "hub")
    snapshots = os.path.join(cache, "models--" + hub_id.replace("/", "--"), "snapshots")
    if not os.path.isdir(snapshots):
        return None
    for snapshot in sorted(os.listdir(snapshots)):
        for name in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
            candidate = os.path.join(snapshots, snapshot, name)
            if os.path.isfile(candidate):
                return candidate
    return None
