"""Layer-wise learning-rate decay for a trained ViT (the release has no ``lr_factor_func``).

With ``depth`` blocks, a ViT parameter gets a layer id: 0 for the patch/position embeddings
and prefix tokens, ``i + 1`` for block ``i``, ``depth + 1`` for the rest (final norm). Its lr
multiplier is ``layer_decay ** (depth + 1 - layer_id)``: the last block trains at
``base_lr * layer_decay``, the embeddings at ``base_lr * layer_decay ** (depth + 1)``.
Everything outside the ViT (upsampler, pyramid, heads) trains at ``base_lr``.
"""
from typing import Any, Dict, List, Optional

import torch
import torch.nn as nn

from anyup_dense.backbones.timm_vit import TimmViT
from anyup_dense.integrations.detectron2.norm import LayerNorm2d

EMBEDDING_NAMES = ("patch_embed", "pos_embed", "cls_token", "reg_token", "mask_token")
NO_DECAY_NAMES = ("pos_embed", "cls_token", "reg_token", "mask_token")
NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm, nn.RMSNorm,
              LayerNorm2d)


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
                             weight_decay_norm: Optional[float] = 0.0) -> List[Dict[str, Any]]:
    """Optimizer param groups for the trainable parameters of ``model``.

    Each group has ``params``, ``lr`` (``base_lr`` times the ViT layer multiplier, 1 outside
    the ViT) and ``weight_decay`` (``weight_decay_norm`` for norm layers, 0 for position
    embeddings and prefix tokens). Groups with equal hyper-parameters are merged.
    """
    from detectron2.solver.build import reduce_param_groups

    multipliers = lr_multipliers(model, layer_decay)
    groups, seen = [], set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or param in seen:
                continue
            seen.add(param)
            decay = weight_decay
            if isinstance(module, NORM_TYPES) and weight_decay_norm is not None:
                decay = weight_decay_norm
            if name in NO_DECAY_NAMES:
                decay = 0.0
            groups.append({"params": [param], "lr": base_lr * multipliers.get(param, 1.0), "weight_decay": decay})
    return reduce_param_groups(groups)


def build_optimizer(cfg, model: nn.Module) -> torch.optim.Optimizer:
    """``SOLVER.OPTIMIZER`` ("SGD"/"ADAMW") over :func:`layer_decay_param_groups`, with
    Detectron2's gradient clipping (``SOLVER.CLIP_GRADIENTS``)."""
    from detectron2.solver.build import maybe_add_gradient_clipping

    s = cfg.SOLVER
    groups = layer_decay_param_groups(model, s.BASE_LR, s.WEIGHT_DECAY, s.VIT_LAYER_DECAY, s.WEIGHT_DECAY_NORM)
    kind = s.OPTIMIZER.upper()
    if kind == "SGD":
        return maybe_add_gradient_clipping(cfg, torch.optim.SGD)(groups, lr=s.BASE_LR, momentum=s.MOMENTUM,
                                                                 nesterov=s.NESTEROV)
    if kind == "ADAMW":
        return maybe_add_gradient_clipping(cfg, torch.optim.AdamW)(groups, lr=s.BASE_LR, betas=tuple(s.BETAS))
    raise ValueError(f"SOLVER.OPTIMIZER must be 'SGD' or 'ADAMW', got {s.OPTIMIZER!r}")
