"""What a recipe provides to the shared training loop.

A recipe is an ``nn.Module`` holding the upsampler (child ``upsampler``) and any other
trainable helper (downsampler, scale network). Its ``forward(images, generator)`` computes
the training loss of one batch, so the loop can wrap the whole recipe in
DistributedDataParallel. The frozen backbone is reached through a :class:`Featurizer`
attribute, outside the module tree.

Checkpoints: the upsampler's weights go to the model file in the layout the upsampler's
builder reads (:meth:`Recipe.export_upsampler`); the rest of the recipe's state (helper
modules) goes into the training-state file (:meth:`Recipe.helper_state_dict`).
"""
from typing import ClassVar, Dict, List, Tuple

import torch
import torch.nn as nn

from anyup_dense.training.config import TrainConfig
from anyup_dense.training.featurizer import Featurizer

UPSAMPLER_PREFIX = "upsampler."


class Recipe(nn.Module):
    """Base class. Subclasses set ``name``, ``config_class`` and implement ``forward``."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type] = TrainConfig
    upsampler: nn.Module

    def __init__(self, config: TrainConfig, featurizer: Featurizer):
        super().__init__()
        self.config = config
        self.featurizer = featurizer

    def require_patch_multiple(self, option: str) -> None:
        """Raise if the config's ``option`` (an image side) is not a multiple of the backbone's patch size."""
        value, patch = getattr(self.config, option), self.featurizer.patch_size
        if value % patch:
            raise ValueError(f"{option} {value} must be a multiple of the backbone's patch size {patch}")

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
