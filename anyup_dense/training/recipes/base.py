"""What a recipe provides to the shared training loop.

A recipe is an ``nn.Module`` holding the upsampler (child ``upsampler``) and any other
trainable helper (downsampler, scale network). Its ``forward(images, generator)`` computes
the training loss of one batch, so the loop can wrap the whole recipe in
DistributedDataParallel. The frozen backbone is reached through a :class:`FrozenBackbone`
attribute, outside the module tree.

Checkpoints: the upsampler's weights go to the model file in the layout the upsampler's
builder reads (:meth:`Recipe.export_upsampler`); the rest of the recipe's state (helper
modules) goes into the training-state file (:meth:`Recipe.helper_state_dict`).

Recipes are found by name in ``RECIPES``; a recipe class registers itself with the
:func:`register_recipe` decorator.
"""
from typing import Any, ClassVar, Dict, List, Tuple

import torch
import torch.nn as nn

from anyup_dense.registry import Registry
from anyup_dense.training.config import TrainConfig
from anyup_dense.training.frozen_backbone import FrozenBackbone
from anyup_dense.upsamplers import build_upsampler

UPSAMPLER_PREFIX = "upsampler."

RECIPES = Registry("recipe")


def register_recipe(recipe_class: type) -> type:
    """Class decorator: registers ``recipe_class`` in ``RECIPES`` under its ``name``."""
    return RECIPES.register(recipe_class.name)(recipe_class)


class Recipe(nn.Module):
    """Base class. Subclasses set ``name`` (the registered upsampler they train, also the
    recipe's own name), ``config_class``, ``image_side`` (the config field holding an image
    side that must be a multiple of the backbone's patch size) and implement ``forward``;
    :meth:`upsampler_arguments` adds builder arguments that follow from the backbone or config.

    ``__init__`` checks ``image_side`` and builds ``self.upsampler`` untrained
    (``pretrained=None``) from those arguments and ``config.upsampler_kwargs``, in train mode.
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type] = TrainConfig
    image_side: ClassVar[str] = ""
    upsampler: nn.Module

    def __init__(self, config: TrainConfig, featurizer: FrozenBackbone):
        super().__init__()
        self.config = config
        self.featurizer = featurizer
        side, patch = getattr(config, self.image_side), featurizer.patch_size
        if side % patch:
            raise ValueError(f"{self.image_side} {side} must be a multiple of the backbone's patch size {patch}")
        self.upsampler = build_upsampler(self.name, pretrained=None, **self.upsampler_arguments(),
                                         **config.upsampler_kwargs).train()

    def upsampler_arguments(self) -> Dict[str, Any]:
        """Builder arguments set by the recipe (default none); ``config.upsampler_kwargs`` adds to them."""
        return {}

    def load_size(self) -> int:
        """Side of the square images the data loader delivers."""
        raise NotImplementedError

    def prepare(self, dataset, info) -> None:
        """Run once before the first step of a fresh run (e.g. statistics estimation)."""

    def forward(self, images: torch.Tensor, generator: torch.Generator) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """images [B, 3, S, S] in [0, 1] -> (scalar loss, detached scalars to log)."""
        raise NotImplementedError

    def param_groups(self) -> List[dict]:
        """Optimiser groups; an optional ``lr_scale`` multiplies the scheduled lr."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def export_upsampler(self) -> dict:
        """The object written to the model file (default: the plain upsampler state_dict)."""
        return {k: v.detach().clone() for k, v in self.upsampler.state_dict().items()}

    def import_upsampler(self, stored: dict) -> None:
        """Inverse of :meth:`export_upsampler`, used when resuming."""
        self.upsampler.load_state_dict(stored, strict=True)

    def helper_state_dict(self) -> Dict[str, torch.Tensor]:
        """State of everything but the upsampler (goes into the training-state file)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(UPSAMPLER_PREFIX)}

    def load_helper_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        full = {UPSAMPLER_PREFIX + k: v for k, v in self.upsampler.state_dict().items()}
        full.update(state)
        self.load_state_dict(full, strict=True)
