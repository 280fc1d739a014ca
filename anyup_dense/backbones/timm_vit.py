"""Frozen (or trainable) timm ViT feature extractors: image -> NCHW patch maps.

    vit = TimmViT("vit_small_patch14_dinov2.lvd142m", pretrained=None)
    maps = vit(image)          # tuple of [B, C, H/p, W/p], one per out_indices entry

Any timm ViT works (DINOv2, DINO, CLIP, SigLIP, ...). Inputs of any size divisible by the
patch size are accepted (position embeddings are interpolated). Prefix and register tokens
are dropped. ``mean``/``std`` record the normalisation the weights expect.
"""
import os
import pickle
import sys
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from anyup_dense.checkpoints import load_state_dict_strict, read_checkpoint
from anyup_dense.freezing import freeze
from anyup_dense.imaging import IMAGENET_MEAN, IMAGENET_STD

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
            hub cache, downloaded if online), or a local checkpoint path (torch or safetensors;
            timm's own keys or an original release timm converts, e.g. DINOv2's or OpenCLIP's:
            :func:`load_backbone_weights`).
        out_indices: blocks whose outputs are returned (negative = from the end).
        norm: apply the final norm to each returned map (the AnyUp/FeatUp convention).
        frozen: :func:`~anyup_dense.freezing.freeze` this backbone (no gradients, eval mode
            that ``train()`` keeps).
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
            freeze(self)

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


WEIGHT_FILE_NAMES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


def load_backbone_weights(model: nn.Module, path: str) -> None:
    """Load a local checkpoint of the timm model ``model`` strictly, as timm loads its own files.

    Read with timm's ``load_state_dict`` (torch with ``weights_only=True``, or safetensors; the
    ``state_dict_ema``/``model_ema``/``state_dict``/``model`` entry of a training dict; DDP and
    ``torch.compile`` prefixes removed), then passed through the architecture's timm
    ``checkpoint_filter_fn``, which converts original releases (DINOv2's ``mask_token`` /
    ``register_tokens``, OpenCLIP, ...) and resamples position embeddings to the model's grid.
    Classifier-head keys are dropped. A file that cannot be read, or a checkpoint of another kind
    (e.g. an mmseg training checkpoint), is named in the error; a key mismatch raises
    :class:`~anyup_dense.checkpoints.CheckpointMismatchError` listing the keys.
    """
    from timm.models import load_state_dict

    if not os.path.isfile(path):
        raise FileNotFoundError(f"backbone weights {path!r} do not exist")
    try:
        state = load_state_dict(path)
    except (RuntimeError, EOFError, pickle.UnpicklingError):
        read_checkpoint(path, "backbone weights")  # raises CheckpointReadError naming the file and its kind
        raise
    filter_fn = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
    if filter_fn is not None:
        state = filter_fn(state, model)
    state = {k: v for k, v in state.items() if not k.startswith("head.")}
    load_state_dict_strict(model, state, source=f"backbone weights {path!r}")


def find_local_weights(model_name: str) -> Optional[str]:
    """``$ANYUP_DENSE_BACKBONE_WEIGHTS`` if set, else the file of ``model_name``'s timm weights in
    the Hugging Face cache at the revision ``refs/main`` points to
    (``huggingface_hub.try_to_load_from_cache``), if it was downloaded before; ``None`` otherwise."""
    from huggingface_hub import try_to_load_from_cache

    env = os.environ.get("ANYUP_DENSE_BACKBONE_WEIGHTS")
    if env:
        return env
    hub_id = _import_timm().models.get_pretrained_cfg(model_name).hf_hub_id
    if not hub_id:
        return None
    for name in WEIGHT_FILE_NAMES:
        cached = try_to_load_from_cache(hub_id, name)
        if isinstance(cached, str):  # not None, nor the marker of a file known to be absent
            return cached
    return None
