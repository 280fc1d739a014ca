"""FeatSharp's training recipe (spec featsharp.md §5, §7): multi-view consistency of the
fused (JBU + tiles) output, in PHI-S space, with a learned de-bias buffer.

Before step 0, :meth:`FeatSharpRecipe.prepare` estimates the PHI-S statistics
(:mod:`~anyup_dense.training.phis`) from ``phis_batches`` batches of backbone features at
resolution R and stores them in the upsampler's ``normalizer`` buffers (fixed afterwards).

Per batch (images loaded at R*u):

1. base = a shared random zoom U(1, 2) and crop of the image
   (:func:`~anyup_dense.training.geometry.zoom_crop`).
2. hr = FeatSharp(backbone(base at R), base, tiles = backbone(u x u tiles of base at R*u))
   [B, D, N, N] in PHI-S space (N = u*R/p).
3. For each of ``n_jitters`` = 5 views (per-view zoom, rotation, perspective,
   :func:`~anyup_dense.training.geometry.featsharp_jitter`): target = PHI-S + de-bias of
   backbone(view at R); down = :class:`~anyup_dense.training.downsamplers.FeatSharpDownsampler`
   (hr warped into the view); weight = (valid pixels of the warp) x (tile-seam loss grid,
   ``grid_weight`` on 2-pixel bands around the seams, mean 1), pooled to the LR grid;
   v = UncertaintyNet(down, detached); loss += weighted MSE * exp(-v) + v / 2, normalised
   (:func:`~anyup_dense.training.losses.uncertainty_weighted_mse`), / n_jitters.

NAdam lr 5e-4 (JBU parameters 1e-4, uncertainty net 1e-5), linear warm-up from 0.1x over
100 steps then cosine to 0, gradient-norm clip 1e-4 for 10 steps then 5, 3000 steps, batch 4.
Not reproduced: spectral re-parametrisation of the Linear layers (plain weights are trained),
and the uncertainty net sees the downsampled view (upstream's exact input is not specified).
"""
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from anyup_dense.training.config import TrainConfig
from anyup_dense.training.data import make_loader
from anyup_dense.training.downsamplers import FeatSharpDownsampler
from anyup_dense.imaging import imagenet_normalize
from anyup_dense.training.frozen_backbone import FrozenBackbone
from anyup_dense.training.geometry import featsharp_jitter, valid_mask, warp, zoom_crop
from anyup_dense.training.losses import uncertainty_weighted_mse
from anyup_dense.training.phis import estimate_phis
from anyup_dense.training.recipes.base import Recipe, register_recipe
from anyup_dense.upsamplers.featsharp import assemble_tiles, tile_crops


@dataclass
class FeatSharpConfig(TrainConfig):
    """Published FeatSharp hyper-parameters (base config); batch size and weight decay are
    :class:`TrainConfig`'s defaults. ``model_resolution`` = the backbone's input size R;
    ``upsample_factor`` = u."""

    model_resolution: int = 224
    upsample_factor: int = 2
    n_jitters: int = 5
    max_zoom: float = 2.0
    grid_weight: float = 2.0
    phis_batches: int = 3000
    jbu_lr_scale: float = 0.2
    uncertainty_lr_scale: float = 0.02
    max_steps: int = 3000
    optimizer: str = "nadam"
    lr: float = 5e-4
    warmup_steps: int = 100
    warmup_start_factor: float = 0.1
    cosine_decay: bool = True
    early_clip_steps: int = 10
    early_clip_norm: float = 1e-4
    clip_norm: float = 5.0
    ckpt_every: int = 1000


class UncertaintyNet(nn.Module):
    """Log-variance v [B, 1, h, w] from features [B, D, h, w]: conv 5x5 (reflect) D -> 256,
    GELU, conv 1x1 256 -> 1 without bias, zero-initialised (v = 0 at the start)."""

    def __init__(self, dim: int, hidden: int = 256):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(dim, hidden, 5, padding=2, padding_mode="reflect"), nn.GELU(),
                                 nn.Conv2d(hidden, 1, 1, bias=False))
        nn.init.zeros_(self.net[2].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def seam_grid(factor: int, tile: int, weight: float, band: int = 2) -> torch.Tensor:
    """[1, 1, N, N] loss weights (N = factor * tile): ``weight`` within ``band`` pixels of the
    tile seams (``band // 2`` on each side), 1 elsewhere, rescaled to mean 1."""
    n = factor * tile
    position = torch.arange(n)
    near = torch.zeros(n, dtype=torch.bool)
    for seam in range(tile, n, tile):
        near |= (position >= seam - band // 2) & (position < seam + band // 2)
    grid = torch.where(near[:, None] | near[None, :], weight, 1.0)
    return (grid / grid.mean()).view(1, 1, n, n)


@register_recipe
class FeatSharpRecipe(Recipe):
    name = "featsharp"
    config_class = FeatSharpConfig
    image_side = "model_resolution"

    def __init__(self, config: FeatSharpConfig, featurizer: FrozenBackbone):
        super().__init__(config, featurizer)
        p, u = featurizer.patch_size, config.upsample_factor
        self.downsampler = FeatSharpDownsampler(featurizer.dim, u)
        self.uncertainty = UncertaintyNet(featurizer.dim)
        self.register_buffer("loss_grid", seam_grid(u, config.model_resolution // p, config.grid_weight),
                             persistent=False)

    def upsampler_arguments(self) -> Dict[str, Any]:
        cfg = self.config
        return {"dim": self.featurizer.dim, "upsample_factor": cfg.upsample_factor,
                "model_resolution": cfg.model_resolution, "patch_size": self.featurizer.patch_size}

    def load_size(self) -> int:
        return self.config.model_resolution * self.config.upsample_factor

    def _at_model_resolution(self, images: torch.Tensor) -> torch.Tensor:
        r = self.config.model_resolution
        return F.interpolate(images, size=(r, r), mode="bilinear", antialias=True, align_corners=False)

    def prepare(self, dataset, info) -> None:
        """PHI-S statistics from ``phis_batches`` batches (split over the processes)."""
        cfg = self.config
        steps = max(1, cfg.phis_batches // info.world_size)
        loader = make_loader(dataset, cfg.batch_size, cfg.seed + 1, 0, steps, info.rank, info.world_size,
                             cfg.num_workers)
        batches = (self.featurizer(self._at_model_resolution(images.to(info.device))) for images in loader)
        stats = estimate_phis(batches, self.featurizer.dim, info)
        normalizer = self.upsampler.normalizer
        for name, value in stats.items():
            getattr(normalizer, name).copy_(value.to(getattr(normalizer, name)))

    def param_groups(self) -> List[dict]:
        cfg = self.config
        groups: Dict[str, List[nn.Parameter]] = {"jbu": [], "uncertainty": [], "rest": []}
        for name, param in self.named_parameters():
            if param.requires_grad:
                key = ("jbu" if name.startswith("upsampler.jbu.") else
                       "uncertainty" if name.startswith("uncertainty.") else "rest")
                groups[key].append(param)
        return [{"params": groups["rest"]}, {"params": groups["jbu"], "lr_scale": cfg.jbu_lr_scale},
                {"params": groups["uncertainty"], "lr_scale": cfg.uncertainty_lr_scale}]

    def forward(self, images: torch.Tensor, generator: torch.Generator) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        cfg, up = self.config, self.upsampler
        b, u, n = images.shape[0], cfg.upsample_factor, up.hr_size
        base = warp(images, zoom_crop(b, generator, cfg.max_zoom))
        tiles = assemble_tiles(self.featurizer(tile_crops(base, cfg.model_resolution, u)), b, u)
        hr = up(self.featurizer(self._at_model_resolution(base)), imagenet_normalize(base), output_size=n,
                tile_features=tiles)
        loss = hr.new_zeros(())
        for _ in range(cfg.n_jitters):
            homography = featsharp_jitter(b, generator)
            target = up.standardize(self.featurizer(warp(base, homography, (cfg.model_resolution,) * 2)))
            down = self.downsampler(warp(hr, homography))
            weight = F.avg_pool2d(valid_mask(homography, (n, n), hr.device) * warp(self.loss_grid.expand(b, -1, -1, -1),
                                                                                   homography), u)
            log_var = self.uncertainty(down.detach())
            loss = loss + uncertainty_weighted_mse(down, target, log_var, weight) / cfg.n_jitters
        return loss, {}
