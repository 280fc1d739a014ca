"""Upsample Anything (arXiv 2511.16301): a per-image fitted joint-bilateral upsampler, no weights.

Implemented from the method's description (arXiv 2511.16301) only: the official repository
(seominseok0429/Upsample-Anything_Pytorch) has no licence, so none of its code is used.

For each image, four per-LR-cell parameter maps (anisotropic spatial sigma_x, sigma_y, angle theta,
range sigma_r) are fitted so that the kernel (``upsample_anything_kernel``) reconstructs the image
from its own bicubic down-sample; the fitted kernels then upsample the features:

    up = UpsampleAnything()
    out = up(features [B,C,h,w], image [B,3,H,W]) -> [B,C,H,W]   # fit + apply, per image
    maps = up.fit(image, (h, w))                  # {'sx_raw', 'sy_raw', 'th_raw', 'sr_raw'}: [B,1,h,w]
    out = up.apply_maps(maps, features, image, output_size)

Conventions:
  * ``image`` is ImageNet-normalised RGB, like every upsampler here. The official fit works on RGB
    in [0, 1], so the image is de-normalised inside (ImageNet mean/std) and clamped to [0, 1].
  * The kernel needs an integer scale s with the guide exactly (s*h, s*w): s = ``scale`` or
    round(max(H/h, W/w)) (the official 224-pixel image and 16x16 DINOv2 grid give s = 14). If the
    image is not already (s*h, s*w) it is resized to it (bicubic, antialiased when shrinking). The
    kernels are applied at (s*h, s*w); another ``output_size`` is then reached by bilinear
    resampling (align_corners=False).
  * Compute dtype: float64 inputs fit and apply in float64; everything else in float32 (the result
    is cast back to the features' dtype).
  * The fit is deterministic (the method draws no random numbers, so there is no seed); the
    official run has 51 Adam steps. ``progress=True`` shows a tqdm bar per image (off by default:
    the cost is per image: on one CPU thread about 16 s for a 224-pixel image with a 32x32 grid, 52 s
    at 448 pixels, under 1.1 GiB process peak).
  * Batches are fitted image by image; memory is bounded by chunking (``chunk_size`` pairs of HR
    pixel and LR neighbour per chunk), in the forward and in the fit's backward.
"""
import math
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from anyup_dense.imaging import IMAGENET_MEAN, IMAGENET_STD, denormalize
from anyup_dense.registry import UPSAMPLERS
from anyup_dense.upsamplers.base import SizeArg, Upsampler, validate_inputs
from anyup_dense.upsamplers.upsample_anything_kernel import (CHUNK_SIZE, INIT_SIGMA, INIT_SIGMA_R, LR, LR_GAMMA,
                                                            PARAM_NAMES, STEPS, StepCallback, fit_maps, init_maps,
                                                            render)

Maps = Dict[str, torch.Tensor]


def _positive(name: str, value, integer: bool = False) -> None:
    """Raise ``ValueError`` unless ``value`` is a positive int (``integer``) or positive finite number."""
    types = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, types) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be {'a positive int' if integer else 'a positive finite number'}, "
                         f"got {value!r}")


class UpsampleAnything(Upsampler):
    """Upsample Anything: fit the kernel maps on each image, then apply them to its features.

    Args:
        steps: Adam steps per image (official 51).
        lr: Adam learning rate (official 0.1).
        lr_gamma: per-step learning-rate factor, step t uses ``lr * lr_gamma**t`` (official
            ``(1e-9/1e-1)**(1/5100)``).
        init_sigma: initial spatial sigma in HR pixels (official 16).
        init_sigma_r: initial range sigma on [0, 1] RGB (official 0.12).
        scale: the integer HR/LR factor s; ``None``: ``round(max(H/h, W/w))`` per call.
        chunk_size: (HR pixel, LR neighbour) pairs evaluated at once; bounds memory.
        progress: show a tqdm bar over each image's fit.
        check_finite: reject NaN/Inf inputs.
    Any feature channel count C works; there are no weights.
    """

    def __init__(self, steps: int = STEPS, lr: float = LR, lr_gamma: float = LR_GAMMA,
                 init_sigma: float = INIT_SIGMA, init_sigma_r: float = INIT_SIGMA_R, scale: Optional[int] = None,
                 chunk_size: int = CHUNK_SIZE, progress: bool = False, check_finite: bool = False):
        super().__init__(check_finite=check_finite)
        for name, value in (("steps", steps), ("chunk_size", chunk_size)):
            _positive(name, value, integer=True)
        for name, value in (("lr", lr), ("lr_gamma", lr_gamma), ("init_sigma", init_sigma),
                            ("init_sigma_r", init_sigma_r)):
            _positive(name, value)
        if scale is not None:
            _positive("scale", scale, integer=True)
        if not isinstance(progress, bool):
            raise ValueError(f"progress must be True or False, got {progress!r}")
        self.steps, self.lr, self.lr_gamma = steps, float(lr), float(lr_gamma)
        self.init_sigma, self.init_sigma_r = float(init_sigma), float(init_sigma_r)
        self.scale, self.chunk_size, self.progress = scale, chunk_size, progress

    def fit_scale(self, image_size: Sequence[int], feature_size: Sequence[int]) -> int:
        """The integer factor s between the kernel's HR grid and the feature grid."""
        if self.scale is not None:
            return self.scale
        return max(1, round(max(image_size[0] / feature_size[0], image_size[1] / feature_size[1])))

    def guide(self, image: torch.Tensor, feature_size: Tuple[int, int]) -> torch.Tensor:
        """ImageNet-normalised image [B,3,H,W] -> the fit's RGB in [0, 1] [B,3,s*h,s*w], compute dtype."""
        dtype = torch.float64 if image.dtype == torch.float64 else torch.float32
        rgb = denormalize(image.to(dtype), IMAGENET_MEAN, IMAGENET_STD)
        scale = self.fit_scale(image.shape[-2:], feature_size)
        size = (scale * feature_size[0], scale * feature_size[1])
        if tuple(rgb.shape[-2:]) != size:
            rgb = F.interpolate(rgb, size=size, mode="bicubic", align_corners=False, antialias=True)
        return rgb.clamp(0, 1)

    def fit(self, image: torch.Tensor, feature_size: Sequence[int], init: Optional[Maps] = None,
            callback: Optional[StepCallback] = None) -> Maps:
        """Fit the kernel maps on each image of ``image`` [B,3,H,W] (ImageNet-normalised) for a feature
        grid ``feature_size`` (h, w).

        Returns ``{'sx_raw', 'sy_raw', 'th_raw', 'sr_raw'}``, each [B,1,h,w] in the compute dtype
        (raw values: sigma = exp, theta = pi*tanh). ``init``: starting maps [B or 1,1,h,w] (default:
        the official init). ``callback(step, loss, step_lr, maps)`` runs after every step of every image.
        """
        if not isinstance(image, torch.Tensor) or image.dim() != 4 or image.shape[1] != 3:
            got = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise ValueError(f"image must be a [B, 3, H, W] tensor, got {got}")
        if not image.is_floating_point():
            raise ValueError(f"image must be a floating-point tensor, got dtype {image.dtype}")
        grid = tuple(feature_size)
        if len(grid) != 2 or not all(isinstance(n, int) and 0 < n <= m for n, m in zip(grid, image.shape[-2:])):
            raise ValueError(f"feature_size must be (h, w), positive ints no larger than the image "
                             f"{tuple(image.shape[-2:])}, got {feature_size!r}")
        hr = self.guide(image, grid)
        start = init_maps(grid, hr.dtype, hr.device, self.init_sigma, self.init_sigma_r) if init is None else init
        self._check_maps("init", start, grid, (1, image.shape[0]))
        fitted = []
        for b in range(image.shape[0]):
            first = {name: value[b if value.shape[0] > 1 else 0][None] for name, value in start.items()}
            fitted.append(fit_maps(hr[b:b + 1], grid, self.steps, self.lr, self.lr_gamma, first, self.chunk_size,
                                   callback, self.progress))
        return {name: torch.cat([maps[name] for maps in fitted]) for name in PARAM_NAMES}

    def apply_maps(self, maps: Maps, features: torch.Tensor, image: torch.Tensor, output_size: SizeArg = None
              ) -> torch.Tensor:
        """Upsample ``features`` [B,C,h,w] with maps fitted on ``image`` [B,3,H,W] -> [B,C,H',W']."""
        size = validate_inputs(features, image, output_size)
        grid = tuple(features.shape[-2:])
        self._check_maps("maps", maps, grid, (features.shape[0],))
        hr = self.guide(image, grid)
        out = hr.new_empty(features.shape[:2] + hr.shape[-2:])
        with torch.no_grad():
            for b in range(features.shape[0]):
                render({name: value[b:b + 1].to(hr) for name, value in maps.items()}, features[b:b + 1].to(hr),
                       hr[b:b + 1], self.chunk_size, out=out[b:b + 1])
        if tuple(out.shape[-2:]) != size:
            out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
        return out.to(features.dtype)

    def upsample(self, features: torch.Tensor, image: torch.Tensor, output_size: Tuple[int, int]) -> torch.Tensor:
        return self.apply_maps(self.fit(image, features.shape[-2:]), features, image, output_size)

    @staticmethod
    def _check_maps(name: str, maps: Maps, grid: Tuple[int, int], batches: Tuple[int, ...]) -> None:
        if not isinstance(maps, dict) or set(maps) != set(PARAM_NAMES):
            got = sorted(maps) if isinstance(maps, dict) else type(maps).__name__
            raise ValueError(f"{name} must be a dict with keys {list(PARAM_NAMES)}, got {got}")
        for key, value in maps.items():
            if (not isinstance(value, torch.Tensor) or value.dim() != 4 or value.shape[0] not in batches
                    or tuple(value.shape[1:]) != (1, *grid)):
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise ValueError(f"{name}[{key!r}] must be a tensor [{' or '.join(map(str, sorted(set(batches))))}, 1, "
                                 f"{grid[0]}, {grid[1]}], got {shape}")

    def extra_repr(self) -> str:
        return (f"steps={self.steps}, lr={self.lr}, lr_gamma={self.lr_gamma:.6g}, init_sigma={self.init_sigma}, "
                f"init_sigma_r={self.init_sigma_r}, scale={self.scale}, chunk_size={self.chunk_size}")


@UPSAMPLERS.register("upsample_anything")
def build_upsample_anything(pretrained=None, **kwargs) -> UpsampleAnything:
    """Upsample Anything with the official fit settings unless overridden (see :class:`UpsampleAnything`).

    ``pretrained`` is accepted so configs can switch upsamplers by ``type`` alone; the method has
    no weights, so it must be ``None``."""
    if pretrained is not None:
        raise ValueError(f"upsample_anything has no weights; pretrained must be None, got {pretrained!r}")
    return UpsampleAnything(**kwargs)
