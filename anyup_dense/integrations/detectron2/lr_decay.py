"""Optimizer param groups: Detectron2's solver keys combined with layer-wise lr decay for a
trained ViT (the release has no ``lr_factor_func``).

Per trainable parameter, first Detectron2's ``get_default_optimizer_params`` (what its own
``build_optimizer`` uses): lr ``base_lr``, weight decay ``weight_decay``; in norm layers
``weight_decay_norm``; for parameters named ``bias`` lr ``base_lr * bias_lr_factor`` and
``weight_decay_bias`` (when not ``None``; it wins over the norm value, as in Detectron2).
Then ours:

* ``nn.RMSNorm``, a norm layer Detectron2 0.6 does not know, gets
  ``weight_decay_norm`` like its own norm types (a ``bias`` keeps ``weight_decay_bias`` if set);
* position embeddings and prefix tokens (:data:`NO_DECAY_NAMES`) get no weight decay;
* the lr is multiplied by the ViT layer multiplier. With ``depth`` blocks, a ViT parameter
  gets a layer id: 0 for the patch/position embeddings and prefix tokens, ``i + 1`` for block
  ``i``, ``depth + 1`` for the rest (final norm); its multiplier is
  ``layer_decay ** (depth + 1 - layer_id)``. Everything outside the ViT (upsampler, pyramid,
  heads) has multiplier 1.

So a bias of ViT block ``i`` trains at ``base_lr * bias_lr_factor * layer_decay ** (depth - i)``.

These are MAE's layer ids (``get_layer_id_for_vit``; Detectron2 0.6 ships no such rule).
timm's ``param_groups_layer_decay`` is not the same rule: it puts the final norm in the last
block's group (scale 1, so block ``i`` gets ``layer_decay ** (depth - 1 - i)``) and decides weight
decay by parameter rank instead of Detectron2's norm/bias keys (tests/test_shared_parts.py).
"""
from typing import Any, Dict, List, Optional

import torch
import torch.nn as nn

from anyup_dense.backbones import TimmViT

EMBEDDING_NAMES = ("patch_embed", "pos_embed", "cls_token", "reg_token", "mask_token")
NO_DECAY_NAMES = ("pos_embed", "cls_token", "reg_token", "mask_token")
# Norm layers that Detectron2 0.6's get_default_optimizer_params does not recognise.
# (The NCHW LayerNorms, timm's and the upsamplers', subclass nn.LayerNorm, which it knows.)
EXTRA_NORM_TYPES = (nn.RMSNorm,)


def vit_layer_id(name: str, depth: int) -> int:
    """Layer id of a parameter named relative to the timm model (e.g. ``"blocks.3.mlp.fc1.weight"``)."""
    parts = name.split(".")
    if parts[0] == "blocks":
        return int(parts[1]) + 1
    if parts[0] in EMBEDDING_NAMES:
        return 0
    return depth + 1


def lr_multipliers(model: nn.Module, layer_decay: float) -> Dict[nn.Parameter, float]:
    """lr multiplier of every parameter inside each :class:`TimmViT` of ``model``."""
    multipliers: Dict[nn.Parameter, float] = {}
    for vit in (m for m in model.modules() if isinstance(m, TimmViT)):
        depth = len(vit.model.blocks)
        for name, param in vit.model.named_parameters():
            multipliers[param] = layer_decay ** (depth + 1 - vit_layer_id(name, depth))
    return multipliers


def layer_decay_param_groups(model: nn.Module, base_lr: float, weight_decay: float, layer_decay: float = 1.0,
                             weight_decay_norm: Optional[float] = 0.0, bias_lr_factor: float = 1.0,
                             weight_decay_bias: Optional[float] = None) -> List[Dict[str, Any]]:
    """Optimizer param groups for the trainable parameters of ``model`` (rules: module docstring).

    Each group has ``params``, ``lr`` and ``weight_decay``; groups with equal
    hyper-parameters are merged.
    """
    from detectron2.solver.build import get_default_optimizer_params, reduce_param_groups

    groups = get_default_optimizer_params(
        model, base_lr=base_lr, weight_decay=weight_decay, weight_decay_norm=weight_decay_norm,
        bias_lr_factor=bias_lr_factor, weight_decay_bias=weight_decay_bias,
        overrides={name: {"weight_decay": 0.0} for name in NO_DECAY_NAMES})
    hyper = {param: {k: v for k, v in group.items() if k != "params"} for group in groups for param in group["params"]}
    if weight_decay_norm is not None:
        for module in model.modules():
            if isinstance(module, EXTRA_NORM_TYPES):
                for name, param in module.named_parameters(recurse=False):
                    if param in hyper and not (name == "bias" and weight_decay_bias is not None):
                        hyper[param]["weight_decay"] = weight_decay_norm
    for param, multiplier in lr_multipliers(model, layer_decay).items():
        if param in hyper:
            hyper[param]["lr"] *= multiplier
    return reduce_param_groups([{"params": [param], **values} for param, values in hyper.items()])


def build_optimizer(cfg, model: nn.Module) -> torch.optim.Optimizer:
    """``SOLVER.OPTIMIZER`` ("SGD"/"ADAMW") over :func:`layer_decay_param_groups` with
    ``SOLVER.BASE_LR``, ``WEIGHT_DECAY``, ``VIT_LAYER_DECAY``, ``WEIGHT_DECAY_NORM``,
    ``BIAS_LR_FACTOR`` and ``WEIGHT_DECAY_BIAS``, and Detectron2's gradient clipping
    (``SOLVER.CLIP_GRADIENTS``)."""
    from detectron2.solver.build import maybe_add_gradient_clipping

    s = cfg.SOLVER
    groups = layer_decay_param_groups(model, s.BASE_LR, s.WEIGHT_DECAY, s.VIT_LAYER_DECAY, s.WEIGHT_DECAY_NORM,
                                      s.BIAS_LR_FACTOR, s.WEIGHT_DECAY_BIAS)
    kind = s.OPTIMIZER.upper()
    if kind == "SGD":
        return maybe_add_gradient_clipping(cfg, torch.optim.SGD)(groups, lr=s.BASE_LR, momentum=s.MOMENTUM,
                                                                 nesterov=s.NESTEROV)
    if kind == "ADAMW":
        return maybe_add_gradient_clipping(cfg, torch.optim.AdamW)(groups, lr=s.BASE_LR, betas=tuple(s.BETAS))
    raise ValueError(f"SOLVER.OPTIMIZER must be 'SGD' or 'ADAMW', got {s.OPTIMIZER!r}")
