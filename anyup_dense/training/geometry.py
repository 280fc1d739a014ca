"""Geometric view jitter as 3x3 homographies in normalised coordinates.

A homography ``M`` [B, 3, 3] maps an output pixel's normalised coordinate (x, y, 1),
x, y in [-1, 1] (``align_corners=False`` convention), to the source coordinate it samples.
Image and feature maps of any resolution are warped by the same matrix, which is how a
view jitter is applied identically to an image and to its upsampled features.

* :func:`featup_jitter`: FeatUp's flip (p 0.5), zoom (p 0.5, factor U(1, max_zoom)),
  reflect pad by ``max_pad`` pixels and crop back at a random offset (an affine map).
* :func:`zoom_crop`: FeatSharp's shared ("unified") zoom U(1, max_zoom) and random crop.
* :func:`featsharp_jitter`: FeatSharp's per-view zoom U(0.95, 1/0.95) about the centre,
  rotation U(-5, 5) degrees and random perspective (corners moved inwards by up to
  U(0.01, 0.05) of the half size).
"""
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F


def _uniform(generator: torch.Generator, n: int, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)


def _coin(generator: torch.Generator, n: int, p: float) -> torch.Tensor:
    return torch.rand(n, generator=generator, dtype=torch.float64) < p


def _affine(sx: torch.Tensor, sy: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    m = torch.zeros(sx.shape[0], 3, 3, dtype=torch.float64)
    m[:, 0, 0], m[:, 1, 1], m[:, 0, 2], m[:, 1, 2], m[:, 2, 2] = sx, sy, tx, ty, 1.0
    return m


def featup_jitter(batch: int, size: Tuple[int, int], generator: torch.Generator, max_pad: int = 20,
                  max_zoom: float = 2.0, zoom_prob: float = 0.5, flip_prob: float = 0.5) -> torch.Tensor:
    """[B, 3, 3] float64. ``size`` = (H, W) of the image, in which ``max_pad`` is measured.

    Derivation (one axis, pixels): pad by P, zoom by z, crop at offset o in [0, (H+2P)z - H];
    output pixel u samples (u + o) / z - P, i.e. in normalised units
    n_in = n_out / z + (1 / z + 2 (o / z - P) / H - 1).
    """
    height, width = size
    flip = torch.where(_coin(generator, batch, flip_prob), -1.0, 1.0).double()
    zoom = torch.where(_coin(generator, batch, zoom_prob), _uniform(generator, batch, 1.0, max_zoom),
                       torch.ones(batch, dtype=torch.float64))

    def shift(extent: int) -> torch.Tensor:
        offset = torch.rand(batch, generator=generator, dtype=torch.float64) * ((extent + 2 * max_pad) * zoom - extent)
        return 1 / zoom + 2 * (offset / zoom - max_pad) / extent - 1

    ty, tx = shift(height), shift(width)
    return _affine(flip / zoom, 1 / zoom, flip * tx, ty)


def zoom_crop(batch: int, generator: torch.Generator, max_zoom: float = 2.0) -> torch.Tensor:
    """[B, 3, 3]: crop a random 1/z window (z ~ U(1, max_zoom)) and scale it to the full size."""
    zoom = _uniform(generator, batch, 1.0, max_zoom)
    room = 1 - 1 / zoom
    tx, ty = (_uniform(generator, batch, -1.0, 1.0) * room for _ in range(2))
    return _affine(1 / zoom, 1 / zoom, tx, ty)


def homography_from_points(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """The [B, 3, 3] homography taking 4 points ``src`` [B, 4, 2] to ``dst`` [B, 4, 2]."""
    b = src.shape[0]
    x, y = src[..., 0], src[..., 1]
    u, v = dst[..., 0], dst[..., 1]
    zeros, ones = torch.zeros_like(x), torch.ones_like(x)
    rows_u = torch.stack([x, y, ones, zeros, zeros, zeros, -u * x, -u * y], -1)
    rows_v = torch.stack([zeros, zeros, zeros, x, y, ones, -v * x, -v * y], -1)
    a = torch.cat([rows_u, rows_v], 1)
    rhs = torch.cat([u, v], 1)
    h = torch.linalg.solve(a, rhs)
    return torch.cat([h, torch.ones(b, 1, dtype=h.dtype)], 1).view(b, 3, 3)


def featsharp_jitter(batch: int, generator: torch.Generator, zoom_range: Tuple[float, float] = (0.95, 1 / 0.95),
                     max_rotation_deg: float = 5.0,
                     perspective_range: Tuple[float, float] = (0.01, 0.05)) -> torch.Tensor:
    """[B, 3, 3] float64: centre zoom, rotation and perspective, composed in that order."""
    zoom = _uniform(generator, batch, *zoom_range)
    scale = _affine(1 / zoom, 1 / zoom, torch.zeros(batch, dtype=torch.float64), torch.zeros(batch, dtype=torch.float64))
    angle = _uniform(generator, batch, -max_rotation_deg, max_rotation_deg) * math.pi / 180
    rotation = scale.new_zeros(batch, 3, 3)
    rotation[:, 0, 0], rotation[:, 0, 1] = angle.cos(), -angle.sin()
    rotation[:, 1, 0], rotation[:, 1, 1] = angle.sin(), angle.cos()
    rotation[:, 2, 2] = 1.0
    corners = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], dtype=torch.float64)
    distortion = _uniform(generator, batch, *perspective_range)[:, None, None]
    inward = torch.rand(batch, 4, 2, generator=generator, dtype=torch.float64) * distortion
    moved = corners * (1 - inward)
    perspective = homography_from_points(corners.expand(batch, 4, 2), moved)
    return scale @ rotation @ perspective


def source_grid(homography: torch.Tensor, size: Tuple[int, int], device=None,
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Sampling grid [B, H, W, 2] (x, y) for ``F.grid_sample`` at output ``size``."""
    height, width = size
    ys = (torch.arange(height, dtype=torch.float64) + 0.5) / height * 2 - 1
    xs = (torch.arange(width, dtype=torch.float64) + 0.5) / width * 2 - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    points = torch.stack([gx, gy, torch.ones_like(gx)], -1).view(1, -1, 3)
    mapped = points @ homography.double().cpu().transpose(1, 2)
    grid = mapped[..., :2] / mapped[..., 2:]
    return grid.view(-1, height, width, 2).to(device=device, dtype=dtype)


def warp(x: torch.Tensor, homography: torch.Tensor, size: Optional[Tuple[int, int]] = None,
         padding_mode: str = "reflection") -> torch.Tensor:
    """[B, C, H, W] -> [B, C, *size] (default: same size), bilinear, differentiable in ``x``."""
    grid = source_grid(homography, size or tuple(x.shape[-2:]), x.device, x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def valid_mask(homography: torch.Tensor, size: Tuple[int, int], device=None) -> torch.Tensor:
    """[B, 1, H, W] float, 1 where the output pixel samples inside the source, 0 elsewhere."""
    grid = source_grid(homography, size, device, torch.float32)
    return (grid.abs() <= 1).all(-1).float()[:, None]
