"""The one training loop every recipe shares.

    path = train("anyup", AnyUpConfig(data="images/", backbone="vit_small_patch14_dinov2.lvd142m"))

Single process or ``torchrun`` (DistributedDataParallel; NCCL on CUDA, gloo on CPU) with the
same call. Each step: draw the step's generator from (seed, rank, step), run the recipe's
loss on this rank's batch share, backward, clip by the schedule, optimiser step. Checkpoints
every ``ckpt_every`` steps and at the end (``max_steps`` <= 0 means one epoch) (:mod:`~anyup_dense.training.checkpointing`);
``resume="auto"`` continues from the newest checkpoint in ``out_dir``, ``resume=path`` from
that one, and the result is bit-identical to an uninterrupted run on the same hardware.
"""
import dataclasses
import math
import warnings
from typing import Dict, Optional

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from anyup_dense.backbones import TimmViT
from anyup_dense.registry import Registry
from anyup_dense.training.checkpointing import latest_checkpoint, load_checkpoint, save_checkpoint
from anyup_dense.training.config import TrainConfig, config_to_dict
from anyup_dense.training.data import ImageFolder, make_loader
from anyup_dense.training.distributed import DistInfo, all_reduce_mean, barrier, init_distributed, shutdown
from anyup_dense.training.frozen_backbone import FrozenBackbone
from anyup_dense.training.monitor import Monitor
from anyup_dense.training.recipes import Recipe, get_recipe
from anyup_dense.training.rng import derive_seed, step_generator

# ``TrainConfig.optimizer`` -> optimizer class (torch's own classes, registered here)
OPTIMIZERS = Registry("optimizer")
OPTIMIZERS.register("adamw")(torch.optim.AdamW)
OPTIMIZERS.register("nadam")(torch.optim.NAdam)


def build_backbone(config: TrainConfig) -> TimmViT:
    """The frozen timm ViT; ``backbone_weights``: "timm", "random" or a local path.

    Seeded from ``config.seed`` so that random weights agree across processes and runs."""
    pretrained = {"timm": True, "random": None}.get(config.backbone_weights, config.backbone_weights)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(config.seed, 1))
        return TimmViT(config.backbone, pretrained=pretrained, frozen=True, **config.backbone_kwargs)


def build_recipe(recipe_name: str, config: TrainConfig, device: torch.device = torch.device("cpu")) -> Recipe:
    """The recipe with its frozen backbone, freshly initialised from ``config.seed``
    (identical on every process and in every run with the same config)."""
    recipe_class = get_recipe(recipe_name)
    if not isinstance(config, recipe_class.config_class):
        raise TypeError(f"recipe {recipe_name!r} needs a {recipe_class.config_class.__name__}")
    featurizer = FrozenBackbone(build_backbone(config), device)
    torch.manual_seed(derive_seed(config.seed, 2))
    return recipe_class(config, featurizer).to(device)


def lr_factor(config: TrainConfig, step: int) -> float:
    """Linear warm-up from ``warmup_start_factor``, then constant or cosine to 0."""
    if step < config.warmup_steps:
        return config.warmup_start_factor + (1 - config.warmup_start_factor) * step / config.warmup_steps
    if not config.cosine_decay:
        return 1.0
    progress = (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def clip_norm_at(config: TrainConfig, step: int) -> float:
    return config.early_clip_norm if step < config.early_clip_steps else config.clip_norm


def build_optimizer(recipe: Recipe, config: TrainConfig) -> torch.optim.Optimizer:
    optimizer_class = OPTIMIZERS.get(config.optimizer)  # KeyError listing the registered names
    groups = []
    for group in recipe.param_groups():
        group = dict(group)
        group.setdefault("lr_scale", 1.0)
        group.setdefault("weight_decay", config.weight_decay)
        group["lr"] = config.lr * group["lr_scale"]
        groups.append(group)
    return optimizer_class(groups, lr=config.lr, betas=tuple(config.betas), weight_decay=config.weight_decay)


def _autocast(config: TrainConfig, device: torch.device):
    """bf16 autocast when ``precision == "bf16"`` (CUDA and CPU alike); fp32 otherwise."""
    if config.precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {config.precision!r}")
    enabled = config.precision == "bf16"
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def _resume_path(config: TrainConfig) -> Optional[str]:
    if config.resume == "auto":
        return latest_checkpoint(config.out_dir)
    return config.resume or None


def _restore(recipe: Recipe, optimizer: torch.optim.Optimizer, path: str, config: TrainConfig) -> int:
    upsampler_object, state = load_checkpoint(path)
    if state["recipe"] != recipe.name:
        raise ValueError(f"{path!r} was written by recipe {state['recipe']!r}, not {recipe.name!r}")
    changed = sorted(k for k, v in config_to_dict(config).items()
                     if k not in ("resume", "max_steps") and state["config"].get(k) != v)
    if changed:
        warnings.warn(f"resuming {path!r} with changed settings: {', '.join(changed)}")
    recipe.import_upsampler(upsampler_object)
    recipe.load_helper_state_dict(state["helpers"])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["step"])


def _save(recipe: Recipe, optimizer: torch.optim.Optimizer, config: TrainConfig, step: int, info: DistInfo) -> str:
    state = {"recipe": recipe.name, "config": config_to_dict(config), "optimizer": optimizer.state_dict(),
             "helpers": recipe.helper_state_dict(), "world_size": info.world_size}
    return save_checkpoint(config.out_dir, step, recipe.export_upsampler(), state)


def _log_scalars(loss: torch.Tensor, terms: Dict[str, torch.Tensor], lr: float, info: DistInfo) -> Dict[str, float]:
    values = torch.stack([loss.detach().float()] + [v.float() for v in terms.values()])
    values = all_reduce_mean(values, info).tolist()
    scalars = dict(zip(["loss", *terms], values))
    scalars["lr"] = lr
    return scalars


def train(recipe_name: str, config: TrainConfig) -> Optional[str]:
    """Train ``recipe_name`` with ``config``; returns the last model file written (rank 0;
    ``None`` on other ranks or when nothing was left to do)."""
    info = init_distributed(config.device)
    try:
        return _train(build_recipe(recipe_name, config, info.device), config, info)
    finally:
        shutdown(info)


def _train(recipe: Recipe, config: TrainConfig, info: DistInfo) -> Optional[str]:
    dataset = ImageFolder(config.data, recipe.load_size(), config.min_image_side)
    if config.max_steps <= 0:  # one epoch
        config = dataclasses.replace(config, max_steps=math.ceil(len(dataset) / (config.batch_size * info.world_size)))
    optimizer = build_optimizer(recipe, config)
    resume = _resume_path(config)
    if resume:
        start = _restore(recipe, optimizer, resume, config)
    else:
        start = 0
        recipe.prepare(dataset, info)
    model: nn.Module = recipe
    if info.enabled:
        model = DistributedDataParallel(recipe, device_ids=[info.device.index] if info.device.type == "cuda" else None,
                                        find_unused_parameters=True, forward_sync_buffers=False)
    loader = make_loader(dataset, config.batch_size, config.seed, start, config.max_steps, info.rank,
                         info.world_size, config.num_workers)
    monitor = Monitor(info.is_main, config.out_dir, start, config.max_steps)
    last_path = None
    model.train()
    for step, images in enumerate(loader, start=start):
        generator = step_generator(config.seed, info.rank, step)
        lr = config.lr * lr_factor(config, step)
        for group in optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        with _autocast(config, info.device):
            loss, terms = model(images.to(info.device, non_blocking=True), generator)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss.item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = clip_norm_at(config, step)
        if max_norm > 0:
            nn.utils.clip_grad_norm_(recipe.parameters(), max_norm)
        optimizer.step()
        done = step + 1
        log_now = done % config.log_every == 0 or done == config.max_steps
        monitor.update(done, _log_scalars(loss, terms, lr, info) if log_now else None,
                       images.shape[0] * info.world_size)
        if done % config.ckpt_every == 0 or done == config.max_steps:
            if info.is_main:
                last_path = _save(recipe, optimizer, config, done, info)
            barrier(info)
    monitor.close()
    return last_path
