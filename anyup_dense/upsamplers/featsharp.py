"""FeatSharp (Ranzinger et al., ICML 2025): JBU upsampling fused with tiled high-resolution features.

Written from the published description (arXiv 2502.16025), not from the official
code, which is under NVIDIA's non-commercial licence. Paper configuration: inputs JBU + tiles,
one fusion level, optional ``no-ln``. Notation: R model resolution, p patch size, L = R // p
the low-res grid, u the upsampling factor, N = u * L the output grid, D the feature dim.

The featurizer (the ViT) runs on the B low-res views (the image resized to R x R, which give
``features`` [B,D,L,L]) and on u x u non-overlapping R x R tiles of the image resized to
uR x uR (``tile_features`` [B,D,N,N], tile (r, c) at rows r*L.., columns c*L..). Then:

  1. every featurizer output goes through PHI-S (``alpha * rotation (x - mean)``) and the
     learned de-bias buffer (``+ bias_buffer``, per L x L tile);
  2. J = JBU(lr, image resized bilinearly to N x N)                       [B,D,N,N]
  3. T = tiles + tile_pos (one learned bias vector per tile)               [B,D,N,N]
  4. out = FusionBlock([J, T]) (windowed ALiBi attention + SwiGLU)         [B,D,N,N]
  5. optionally ``denormalize`` back to the featurizer's space (PHI-S inverse).

The native output is always N x N (square, whatever the image's aspect ratio). ``output_size``
(default: the image size, as for every upsampler here) resamples it bilinearly
(align_corners=False); pass ``output_size=model.hr_size`` for the native map.
"""
import os
from typing import Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from anyup_dense.checkpoints import load_checkpoint, load_state_dict_strict
from anyup_dense.registry import UPSAMPLERS
from anyup_dense.upsamplers.base import Featurizer, SizeArg, Upsampler, validate_inputs
from anyup_dense.upsamplers.featsharp_checkpoint import convert_official_state_dict, model_state
from anyup_dense.upsamplers.featsharp_fusion import FusionBlock
from anyup_dense.upsamplers.featsharp_jbu import FeatSharpJBU


class PhiSNormalizer(nn.Module):
    """PHI-S standardisation of [B, D, H, W] maps: ``alpha * rotation (x - mean)`` and its inverse.

    The buffers come from the checkpoint (identity transform by default).
    """

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("alpha", torch.tensor(1.0))
        self.register_buffer("rotation", torch.eye(dim))
        self.register_buffer("inv_rotation", torch.eye(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - self.mean[:, None, None]
        return self.alpha * torch.einsum("dc,bchw->bdhw", self.rotation, centred)

    def denormalize(self, y: torch.Tensor) -> torch.Tensor:
        return torch.einsum("dc,bchw->bdhw", self.inv_rotation, y) / self.alpha + self.mean[:, None, None]


def low_res_views(image: torch.Tensor, model_resolution: int) -> torch.Tensor:
    """image [B, 3, H, W] -> [B, 3, R, R] (bilinear, align_corners=False)."""
    return F.interpolate(image, size=(model_resolution, model_resolution), mode="bilinear", align_corners=False)


def tile_crops(image: torch.Tensor, model_resolution: int, factor: int) -> torch.Tensor:
    """image [B, 3, H, W] -> the u x u tiles of the image resized to uR x uR: [B*u*u, 3, R, R],
    ordered (b, tile_row, tile_col)."""
    b, c = image.shape[:2]
    big = F.interpolate(image, size=(factor * model_resolution,) * 2, mode="bilinear", align_corners=False)
    tiles = big.view(b, c, factor, model_resolution, factor, model_resolution).permute(0, 2, 4, 1, 3, 5)
    return tiles.reshape(b * factor * factor, c, model_resolution, model_resolution)


def assemble_tiles(tile_features: torch.Tensor, batch: int, factor: int) -> torch.Tensor:
    """[B*u*u, D, L, L] in (b, row, col) order -> [B, D, u*L, u*L]."""
    _, d, h, w = tile_features.shape
    grid = tile_features.view(batch, factor, factor, d, h, w).permute(0, 3, 1, 4, 2, 5)
    return grid.reshape(batch, d, factor * h, factor * w)


class FeatSharp(Upsampler):
    """FeatSharp upsampler (paper configuration, one fusion level).

    Args:
        dim: feature dim D of the featurizer (fusion width 2D, divisible by ``num_heads``).
        upsample_factor: u >= 2 (one JBU level per prime factor, u x u tiles).
        model_resolution: the featurizer's input resolution R (crop size).
        patch_size: the featurizer's patch size p; L = R // p (defaults: u = 2, R = 224, p = 14).
        no_ln: the ``featsharp.no-ln`` variant (no LayerNorms in the fusion block).
        num_heads, window_size: fusion attention heads and window (official: 16, 7).
        denormalize: map the output back through PHI-S inverse (official default: False, i.e.
            the output is in PHI-S space).
        check_finite: reject NaN/Inf inputs.
    """

    requires_featurizer = True

    def __init__(self, dim: int, upsample_factor: int = 2, model_resolution: int = 224, patch_size: int = 14,
                 no_ln: bool = False, num_heads: int = 16, window_size: int = 7, denormalize: bool = False,
                 check_finite: bool = False):
        super().__init__(check_finite=check_finite)
        if model_resolution < 2 * patch_size:
            raise ValueError(f"model_resolution ({model_resolution}) must give a low-res grid of at least 2x2 "
                             f"patches of size {patch_size}")
        self.expected_channels = dim
        self.upsample_factor = upsample_factor
        self.model_resolution = model_resolution
        self.lr_size = model_resolution // patch_size
        self.hr_size = upsample_factor * self.lr_size
        self.denormalize = denormalize
        self.normalizer = PhiSNormalizer(dim)
        self.bias_buffer = nn.Parameter(torch.zeros(1, dim, self.lr_size, self.lr_size))
        self.jbu = FeatSharpJBU(upsample_factor)
        self.tile_pos = nn.Parameter(torch.zeros(1, dim, upsample_factor, upsample_factor))
        self.block = FusionBlock(dim, num_heads, window_size, no_ln)

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        """Raw featurizer output [B, D, kL, kL] (k x k tiles of L x L) -> PHI-S + de-bias, same shape."""
        repeats = x.shape[-1] // self.lr_size
        return self.normalizer(x) + self.bias_buffer.repeat(1, 1, repeats, repeats)

    def _raw_tile_features(self, image: torch.Tensor, tile_features: Optional[torch.Tensor],
                           featurizer: Optional[Featurizer]) -> torch.Tensor:
        """The assembled raw tile features [B, D, N, N], given or computed with ``featurizer``."""
        b, d, n = image.shape[0], self.expected_channels, self.hr_size
        if (tile_features is None) == (featurizer is None):
            raise ValueError("FeatSharp needs exactly one of tile_features= (raw featurizer outputs of the "
                             f"{self.upsample_factor}x{self.upsample_factor} tiles, [B,{d},{n},{n}]) or "
                             "featurizer= (a callable [N,3,R,R] -> [N,D,L,L])")
        if featurizer is not None:
            crops = tile_crops(image, self.model_resolution, self.upsample_factor)
            out = featurizer(crops)
            expected = (crops.shape[0], d, self.lr_size, self.lr_size)
            if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
                got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise ValueError(f"featurizer returned {got} for {crops.shape[0]} tiles of "
                                 f"{self.model_resolution}x{self.model_resolution}; expected {expected}")
            tile_features = assemble_tiles(out, b, self.upsample_factor)
        if tile_features.dim() != 4 or tuple(tile_features.shape) != (b, d, n, n):
            raise ValueError(f"tile_features must be [B, D, N, N] = [{b}, {d}, {n}, {n}] "
                             f"({self.upsample_factor}x{self.upsample_factor} tiles of {self.lr_size}x"
                             f"{self.lr_size}), got {tuple(tile_features.shape)}")
        if tile_features.dtype != image.dtype:
            raise ValueError(f"dtype mismatch: tile_features are {tile_features.dtype} but image is {image.dtype}")
        return tile_features

    def forward(self, features: torch.Tensor, image: torch.Tensor, output_size: SizeArg = None, *,
                tile_features: Optional[torch.Tensor] = None,
                featurizer: Optional[Featurizer] = None) -> torch.Tensor:
        """features [B,D,L,L] (featurizer on the R x R view), image [B,3,H,W] -> [B,D,H',W'].

        Tiles come from ``tile_features`` [B,D,N,N] or are computed by ``featurizer`` on the
        u*u crops of :func:`tile_crops`.
        """
        size = validate_inputs(features, image, output_size, expected_channels=self.expected_channels,
                               reference_param=self.tile_pos, check_finite=self.check_finite)
        if tuple(features.shape[-2:]) != (self.lr_size, self.lr_size):
            raise ValueError(f"features must be the {self.lr_size}x{self.lr_size} grid of the featurizer at "
                             f"{self.model_resolution}x{self.model_resolution}; got "
                             f"{features.shape[-2]}x{features.shape[-1]}")
        tiles = self._raw_tile_features(image, tile_features, featurizer)
        out = self.upsample_with_tiles(features, image, tiles)
        if tuple(out.shape[-2:]) != tuple(size):
            out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
        return out

    def upsample_with_tiles(self, features: torch.Tensor, image: torch.Tensor,
                            tile_features: torch.Tensor) -> torch.Tensor:
        """Raw features [B,D,L,L], image [B,3,H,W], raw tiles [B,D,N,N] -> [B,D,N,N] (no validation)."""
        n, repeats = self.hr_size, self.lr_size
        guidance = F.interpolate(image, size=(n, n), mode="bilinear", align_corners=False)
        jbu = self.jbu(self.standardize(features), guidance)
        tile_bias = self.tile_pos.repeat_interleave(repeats, dim=2).repeat_interleave(repeats, dim=3)
        tokens = torch.cat([jbu, self.standardize(tile_features) + tile_bias], dim=1).permute(0, 2, 3, 1)
        out = self.block(tokens).permute(0, 3, 1, 2)
        return self.normalizer.denormalize(out) if self.denormalize else out


@UPSAMPLERS.register("featsharp")
def build_featsharp(dim: int, upsample_factor: int = 2, model_resolution: int = 224, patch_size: int = 14,
                    pretrained: Union[None, bool, str, os.PathLike] = None, no_ln: bool = False,
                    **kwargs) -> FeatSharp:
    """FeatSharp for a featurizer of dim D at resolution R with patch p (defaults: 2x for a /14 ViT
    at 224, e.g. DINOv2 ViT-S/14 with dim=384); ``pretrained``: a path or URL
    to a training checkpoint (``last.pth.tar``: ``model_state`` + ``upsample_args``, plain or
    spectral weights) or a plain state_dict, or ``None``/``False``. No official weights are
    released, so ``True`` is refused.
    """
    model = FeatSharp(dim, upsample_factor, model_resolution, patch_size, no_ln=no_ln, **kwargs)
    if pretrained is not None and pretrained is not False:
        checkpoint = load_checkpoint(pretrained, {})
        state = convert_official_state_dict(model_state(checkpoint, upsample_factor, no_ln))
        load_state_dict_strict(model, state, source=f"FeatSharp checkpoint {pretrained!r}")
    return model.eval()
