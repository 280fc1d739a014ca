"""AnyUp's training recipe (spec anyup.md §8).

Per batch of B images of side 2S (S = ``crop_size``, 224 in the paper):

1. guidance = the image resized to S x S; an augmented copy goes through the same resize.
2. ``crops_per_image`` crops of S x S per image at top/left offsets that are random
   multiples of the patch size p in [0, S] -> targets = backbone(crops) [B*n, C, S/p, S/p];
   inputs lr = backbone(guidance) [B, C, S/p, S/p].
3. pred = AnyUp(lr, guidance, output 2S/p): each crop's window of pred is compared with
   the crop's features (``L_main``, :func:`~anyup_dense.training.losses.cosine_mse`).
4. ``L_aug`` = 0.1 * cosine_mse(AnyUp(lr, augmented guidance, S), AnyUp(lr, guidance, S) detached).
5. ``L_down`` = 0.1 * cosine_mse(area-downsample(pred, S/p), lr).

Optimiser: AdamW lr 2e-4, betas (0.9, 0.999), weight decay 1e-5, constant lr, no clipping,
100k steps, batch 4; bf16 autocast on CUDA; images with shorter side >= 2S.
"""
from dataclasses import dataclass
from typing import Dict, Tuple

import torch
import torch.nn.functional as F

from anyup_dense.training.augment import augment_batch
from anyup_dense.training.config import TrainConfig
from anyup_dense.imaging import imagenet_normalize
from anyup_dense.training.losses import cosine_mse
from anyup_dense.training.recipes.base import Recipe, register_recipe


@dataclass
class AnyUpConfig(TrainConfig):
    """Published AnyUp hyper-parameters (single-backbone ``training-code`` config); the
    optimiser, steps, batch size and checkpoint interval are :class:`TrainConfig`'s defaults."""

    crop_size: int = 224
    crops_per_image: int = 4
    augmentation_strength: float = 1.0
    augmentation_weight: float = 0.1
    downsampling_weight: float = 0.1
    min_image_side: int = 448
    weight_decay: float = 1e-5
    precision: str = "bf16"


def random_patch_offsets(count: int, grid: int, generator: torch.Generator) -> torch.Tensor:
    """[count, 2] (top, left) in patch units, uniform in {0, ..., grid}."""
    return torch.randint(0, grid + 1, (count, 2), generator=generator)


def cut_crops(images: torch.Tensor, offsets: torch.Tensor, crop: int, unit: int) -> torch.Tensor:
    """Crop i of image i // n (n = len(offsets) / B): [B, C, H, W] -> [B*n, C, crop, crop],
    top-left corner at ``offsets * unit``."""
    per_image = offsets.shape[0] // images.shape[0]
    crops = []
    for i, (top, left) in enumerate(offsets.tolist()):
        image = images[i // per_image]
        crops.append(image[:, top * unit: top * unit + crop, left * unit: left * unit + crop])
    return torch.stack(crops)


def anyup_objective(pred: torch.Tensor, crop_targets: torch.Tensor, offsets: torch.Tensor, lr_features: torch.Tensor,
                    aug_pred: torch.Tensor, clean_pred: torch.Tensor, augmentation_weight: float,
                    downsampling_weight: float) -> Dict[str, torch.Tensor]:
    """AnyUp's three loss terms and their sum.

    pred [B, C, 2g, 2g] (upsampled from the guidance); crop_targets [B*n, C, g, g] with
    ``offsets`` [B*n, 2] in feature pixels; lr_features [B, C, g, g]; aug_pred / clean_pred
    [B, C, S, S] (clean_pred is detached here).
    Returns ``main``, ``aug`` and ``down`` (already weighted) and ``loss``.
    """
    windows = cut_crops(pred, offsets, crop_targets.shape[-1], 1)
    main = cosine_mse(windows, crop_targets)
    aug = augmentation_weight * cosine_mse(aug_pred, clean_pred.detach())
    down = downsampling_weight * cosine_mse(F.adaptive_avg_pool2d(pred, lr_features.shape[-2:]), lr_features)
    return {"main": main, "aug": aug, "down": down, "loss": main + aug + down}


@register_recipe
class AnyUpRecipe(Recipe):
    name = "anyup"
    config_class = AnyUpConfig
    image_side = "crop_size"

    def load_size(self) -> int:
        return 2 * self.config.crop_size

    def forward(self, images: torch.Tensor, generator: torch.Generator) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        cfg, p = self.config, self.featurizer.patch_size
        size, grid = cfg.crop_size, cfg.crop_size // p
        augmented = augment_batch(images, generator, cfg.augmentation_strength)
        guidance = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        guidance_aug = F.interpolate(augmented, size=(size, size), mode="bilinear", antialias=True,
                                     align_corners=False)
        offsets = random_patch_offsets(images.shape[0] * cfg.crops_per_image, grid, generator)
        crop_targets = self.featurizer(cut_crops(images, offsets, size, p))
        lr_features = self.featurizer(guidance)
        guidance, guidance_aug = imagenet_normalize(guidance), imagenet_normalize(guidance_aug)
        pred = self.upsampler(lr_features, guidance, output_size=2 * grid)
        aug_pred = self.upsampler(lr_features, guidance_aug, output_size=size)
        with torch.no_grad():
            clean_pred = self.upsampler(lr_features, guidance, output_size=size)
        terms = anyup_objective(pred, crop_targets, offsets, lr_features, aug_pred, clean_pred,
                                cfg.augmentation_weight, cfg.downsampling_weight)
        loss = terms.pop("loss")
        return loss, {k: v.detach() for k, v in terms.items()}
