"""FeatUp's JBU training recipe (spec featup_jbu.md §6): multi-view reconstruction through
a learned downsampler.

Per batch (images resized to ``image_size`` = 224 and centre-cropped):

1. lr = backbone(image); hr = JBU(lr, image) resized to the image size (``output_size``).
2. For each of ``n_jitters`` = 5 views: a random flip / zoom / pad-and-crop
   (:func:`~anyup_dense.training.geometry.featup_jitter`) applied identically to the image
   and to hr; target = ChannelNorm(backbone(jittered image)); a random projection P
   [B, C, 30]; down = :class:`~anyup_dense.training.downsamplers.FeatUpDownsampler`(jittered hr);
   loss += Gaussian NLL(P^T down, P^T target, s) / n_jitters with s = ScaleNet(target).
3. First view only: + 0.001 * sampled CRF loss of the projected jittered hr.

NAdam lr 1e-3, batch 4, one epoch, gradient-norm clip 1e-4 for the first 10 steps. The
ChannelNorm is never trained (as upstream: it is frozen at weight 1, bias 0). The views'
losses are summed into one backward pass (upstream calls backward per view; the gradients
are the same). Deviation: the CRF term pairs the jittered features with the jittered image
(upstream pairs them with the un-jittered image).
"""
from dataclasses import dataclass
from typing import Any, Dict, Tuple

import torch
import torch.nn as nn

from anyup_dense.training.config import TrainConfig
from anyup_dense.training.downsamplers import FeatUpDownsampler
from anyup_dense.imaging import imagenet_normalize
from anyup_dense.training.frozen_backbone import FrozenBackbone
from anyup_dense.training.geometry import featup_jitter, warp
from anyup_dense.training.losses import project, random_projection, sampled_crf, scaled_reconstruction_nll
from anyup_dense.training.recipes.base import Recipe, register_recipe


@dataclass
class FeatUpJBUConfig(TrainConfig):
    """Published FeatUp JBU hyper-parameters (``configs/jbu_upsampler.yaml``); batch size,
    weight decay and the later clipping are :class:`TrainConfig`'s defaults.
    ``max_steps`` = 0 trains one epoch."""

    image_size: int = 224
    n_jitters: int = 5
    max_pad: int = 20
    max_zoom: float = 2.0
    projection_dim: int = 30
    crf_weight: float = 0.001
    crf_samples: int = 1000
    use_norm: bool = True
    max_steps: int = 0
    optimizer: str = "nadam"
    lr: float = 1e-3
    early_clip_steps: int = 10
    early_clip_norm: float = 1e-4
    ckpt_every: int = 5_000


class ScaleNet(nn.Module):
    """Per-pixel reconstruction scale s = max(exp(conv1x1(x) + 0.1), 1e-4); [B, C, h, w] ->
    [B, 1, h, w]. Weights and bias start at 0.1x PyTorch's default init."""

    def __init__(self, dim: int):
        super().__init__()
        self.net = nn.Conv2d(dim, 1, 1)
        with torch.no_grad():
            self.net.weight.mul_(0.1)
            self.net.bias.mul_(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.net(x) + 0.1).clamp(min=1e-4)


@register_recipe
class FeatUpJBURecipe(Recipe):
    name = "featup_jbu"
    config_class = FeatUpJBUConfig
    image_side = "image_size"

    def __init__(self, config: FeatUpJBUConfig, featurizer: FrozenBackbone):
        super().__init__(config, featurizer)
        dim, patch = featurizer.dim, featurizer.patch_size
        if self.upsampler.channel_norm is not None:
            self.upsampler.channel_norm.requires_grad_(False)
        self.downsampler = FeatUpDownsampler(dim, kernel=patch, final_size=config.image_size // patch)
        self.scale_net = ScaleNet(dim)

    def upsampler_arguments(self) -> Dict[str, Any]:
        return {"dim": self.featurizer.dim, "use_norm": self.config.use_norm}

    def load_size(self) -> int:
        return self.config.image_size

    def targets(self, images: torch.Tensor) -> torch.Tensor:
        """LR features of images in [0, 1], after the (frozen) ChannelNorm."""
        features = self.featurizer(images)
        norm = self.upsampler.channel_norm
        return features if norm is None else norm(features)

    def forward(self, images: torch.Tensor, generator: torch.Generator) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        cfg = self.config
        b, size = images.shape[0], images.shape[-2:]
        guidance = imagenet_normalize(images)
        hr = self.upsampler(self.featurizer(images), guidance, output_size=tuple(size))
        reconstruction = hr.new_zeros(())
        crf = hr.new_zeros(())
        for view in range(cfg.n_jitters):
            homography = featup_jitter(b, tuple(size), generator, cfg.max_pad, cfg.max_zoom)
            jittered_images = warp(images, homography)
            hr_view = warp(hr, homography)
            target = self.targets(jittered_images)
            projection = random_projection(b, hr.shape[1], cfg.projection_dim, generator)
            down = self.downsampler(hr_view)
            reconstruction = reconstruction + scaled_reconstruction_nll(
                project(down, projection), project(target, projection), self.scale_net(target)) / cfg.n_jitters
            if view == 0 and cfg.crf_weight > 0:
                crf = cfg.crf_weight * sampled_crf(project(hr_view, projection), imagenet_normalize(jittered_images),
                                                   generator, cfg.crf_samples)
        return reconstruction + crf, {"reconstruction": reconstruction.detach(), "crf": crf.detach()}
