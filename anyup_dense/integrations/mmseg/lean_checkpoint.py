"""Lean checkpoints: frozen weights the model rebuilds from their release are not saved again.

    custom_hooks = [dict(type='LeanCheckpointHook')]   # on in the probe schedules

On save, the hook leaves out of ``state_dict`` every frozen part built from released
weights: a frozen ``TimmViT`` backbone with timm's weights (``pretrained=True``) or a
weights file, and a frozen upsampler neck's upsampler with a ``pretrained=`` release, name,
URL or file. It records what it left out and where from in ``meta['lean_checkpoint']``
(``{state_dict prefix: source}``). A linear probe's checkpoint then holds its head alone.

On load (``load_from``, ``--resume``, ``tools/test.py``), the hook puts the left-out parts back
into the loaded ``state_dict`` from the model as built, which loaded them from the same
source, and logs where from. A model built from another source (e.g. ``pretrained=None``)
is an error naming the key to set, not a silent random part.
"""
from typing import Dict, Optional

import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS

from anyup_dense.backbones import TimmViT
from anyup_dense.integrations.mmseg.necks import UpsamplerNeck

META_KEY = "lean_checkpoint"
CONFIG_KEYS = {"backbone": "model.backbone.pretrained", "neck.upsampler": "model.neck.pretrained"}


def backbone_source(backbone: nn.Module) -> Optional[str]:
    """Where a frozen ``TimmViT``'s weights come from: ``"timm weights of NAME"`` or ``"file
    PATH"``; ``None`` for other, trainable or randomly initialised backbones."""
    if not isinstance(backbone, TimmViT) or not backbone.frozen or backbone.weights == "random":
        return None
    if backbone.weights == "timm":
        return f"timm weights of {backbone.model_name!r}"
    return f"file {backbone.weights!r}"


def upsampler_source(neck: Optional[nn.Module]) -> Optional[str]:
    """Where a frozen upsampler neck's upsampler weights come from: ``"NAME pretrained=..."``;
    ``None`` for other necks, trainable upsamplers or ones without ``pretrained=``."""
    if not isinstance(neck, UpsamplerNeck) or not neck.frozen or neck.pretrained in (None, False):
        return None
    return f"{neck.upsampler_name} pretrained={neck.pretrained!r}"


def rebuildable_parts(model: nn.Module) -> Dict[str, str]:
    """``{state_dict prefix: source}`` of the model's frozen parts built from released weights."""
    sources = {"backbone": backbone_source(model.backbone),
               "neck.upsampler": upsampler_source(getattr(model, "neck", None))}
    return {prefix: source for prefix, source in sources.items() if source is not None}


@HOOKS.register_module()
class LeanCheckpointHook(Hook):
    """Save checkpoints without the frozen parts rebuilt from their release, and restore them
    when such a checkpoint is loaded (see the module docstring)."""

    priority = "VERY_LOW"  # after hooks that add to the checkpoint

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        parts = rebuildable_parts(model)
        state = checkpoint["state_dict"]
        for prefix in parts:
            for key in [k for k in state if k.startswith(f"{prefix}.")]:
                del state[key]
        checkpoint.setdefault("meta", {})[META_KEY] = parts

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        parts = checkpoint.get("meta", {}).get(META_KEY) or {}
        if not parts:
            return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        built = rebuildable_parts(model)
        state = checkpoint["state_dict"]
        for prefix, source in parts.items():
            if built.get(prefix) != source:
                raise ValueError(f"the checkpoint leaves out the frozen {prefix} weights ({source}), to be rebuilt "
                                 f"from there, but this model's {prefix} was built from "
                                 f"{built.get(prefix) or 'no released weights'}: set {CONFIG_KEYS[prefix]} (and "
                                 f"frozen=True) as in the training config")
            state.update({f"{prefix}.{k}": v for k, v in model.get_submodule(prefix).state_dict().items()})
            print_log(f"LeanCheckpointHook: {prefix} weights restored from {source} (left out of the checkpoint)",
                      logger="current")
