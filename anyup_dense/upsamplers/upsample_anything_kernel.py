"""Upsample Anything's kernel (arXiv 2511.16301) and its per-image fit, on RGB in [0, 1].

Written from the method's description only: the official repository has no licence, so none of
its code is copied, translated or adapted here.

Geometry: the LR grid is [Hl, Wl], the HR grid [Hh, Wh] = [s*Hl, s*Wl] for an integer scale s.
Four raw parameter maps [1, 1, Hl, Wl], one value per LR cell (official names):
``sx_raw``, ``sy_raw`` (sigma = exp, in HR pixels), ``th_raw`` (theta = pi*tanh), ``sr_raw``
(range sigma = exp).

The kernel ``render(maps, values [1,C,Hl,Wl], guide [1,3,Hh,Wh]) -> [1,C,Hh,Wh]``: HR pixel (Y, X)
has the centre cell (Y // s, X // s) (the spec's nearest-centre rule for an integer s) and mixes the
cells at offsets (dY, dX) in {-8..8}^2 (indices clamped at the border, repeats count) with
``dY^2 + dX^2 <= R(Y, X)^2``, where ``R = clamp(ceil(2 * bilinear_up(max(sx, sy))), 1, 8)``
(sigma in HR pixels, R in LR cells: the official unit quirk). The weights are a softmax over those
neighbours of::

    -x'^2 / (2 sx^2 + 1e-8) - y'^2 / (2 sy^2 + 1e-8) - |guide(Y,X) - bilinear_lr(guide)(cell)|^2 / (2 sr^2 + 1e-8)

with (x', y') the offset (dx, dy) of the pixel from the neighbour cell's centre, rotated by that
cell's theta, and each weight using the *neighbour's* parameters. Here the spatial term is expanded
into ``A dx^2 + B dx dy + C dy^2`` with per-cell coefficients (the same function; only roundoff
differs): dx depends on the pixel's column only and dy on its row only, so the terms are built on
[cell, s, neighbour] grids; with the colour distance from ``torch.cdist`` this keeps the
per-(pixel, neighbour) work and the autograd state small.

Cost: every HR pixel sees up to 197 neighbours (the radius-8 disc). The work is done in chunks of
whole LR cells holding at most about ``chunk_size`` (pixel, neighbour) pairs plus gathered neighbour
values, in the forward and in the fit's backward (each chunk's loss is back-propagated on its own and
the gradients accumulate), so the working memory does not grow with the image; only the per-pixel
inputs and the output do.
"""
import math
from typing import Callable, Dict, Iterator, Optional, Tuple

import torch
import torch.nn.functional as F
from torch.hub import tqdm  # tqdm when installed, else torch.hub's silent stand-in

PARAM_NAMES = ("sx_raw", "sy_raw", "th_raw", "sr_raw")
R_MAX = 8
ALPHA_DYN = 2.0
SIGMA_MIN = 1e-6
DENOM_EPS = 1e-8
INIT_SIGMA = 16.0
INIT_SIGMA_R = 0.12
LR = 0.1
STEPS = 51
# LambdaLR(gamma ** step) with gamma = (1e-9 / 1e-1) ** (1 / 5100): the official loop is written for
# 5100 steps (which only sets gamma) and stops after step 50.
LR_GAMMA = (1e-9 / 1e-1) ** (1 / 5100)
CHUNK_SIZE = 1 << 21

Maps = Dict[str, torch.Tensor]
Rect = Tuple[int, int, int, int]


def init_maps(grid: Tuple[int, int], dtype: torch.dtype = torch.float32, device=None,
              init_sigma: float = INIT_SIGMA, init_sigma_r: float = INIT_SIGMA_R) -> Maps:
    """The official start of the fit: sigma_x = sigma_y = ``init_sigma`` HR pixels, theta = 0,
    sigma_r = ``init_sigma_r``; four maps [1, 1, Hl, Wl]."""
    values = {"sx_raw": math.log(init_sigma), "sy_raw": math.log(init_sigma), "th_raw": 0.0,
              "sr_raw": math.log(init_sigma_r)}
    return {name: torch.full((1, 1, *grid), values[name], dtype=dtype, device=device) for name in PARAM_NAMES}


def radius_map(maps: Maps, hr_size: Tuple[int, int]) -> torch.Tensor:
    """The dynamic support radius in LR cells, int64 [Hh, Wh] (non-differentiable)."""
    with torch.no_grad():
        sigma = torch.maximum(maps["sx_raw"].exp(), maps["sy_raw"].exp())
        up = F.interpolate(sigma, size=hr_size, mode="bilinear", align_corners=False)
        return torch.ceil(ALPHA_DYN * up).clamp(1, R_MAX).long()[0, 0]


def _coefficients(maps: Maps) -> torch.Tensor:
    """Per LR cell [Hl*Wl, 4]: (A, B, C, D) with log w = A dx^2 + B dx dy + C dy^2 + D d^2 (all <= 0)."""
    sx, sy, sr = (maps[name].exp().clamp(min=SIGMA_MIN) for name in ("sx_raw", "sy_raw", "sr_raw"))
    theta = math.pi * torch.tanh(maps["th_raw"])
    cos, sin = torch.cos(theta), torch.sin(theta)
    inv_x, inv_y = -1 / (2 * sx * sx + DENOM_EPS), -1 / (2 * sy * sy + DENOM_EPS)
    a = cos * cos * inv_x + sin * sin * inv_y
    b = 2 * sin * cos * (inv_x - inv_y)
    c = sin * sin * inv_x + cos * cos * inv_y
    d = -1 / (2 * sr * sr + DENOM_EPS)
    return torch.cat([a, b, c, d], dim=1).flatten(2)[0].t()


def _disc_offsets(radius: int, device) -> Tuple[torch.Tensor, torch.Tensor]:
    """Offsets (dY, dX) with dY^2 + dX^2 <= radius^2, row-major (dY outer), int64 [K] each."""
    d = torch.arange(-radius, radius + 1, device=device)
    dy, dx = torch.meshgrid(d, d, indexing="ij")
    keep = dy * dy + dx * dx <= radius * radius
    return dy[keep], dx[keep]


def _to_cells(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """[C, Hh, Wh] -> cell-major [Hl, Wl, s*s, C] (pixel (i, j) of a cell at i*s + j)."""
    c, hh, wh = hr.shape
    cells = hr.reshape(c, hh // scale, scale, wh // scale, scale).permute(1, 3, 2, 4, 0)
    return cells.reshape(hh // scale, wh // scale, scale * scale, c)


def _chunk_rects(grid: Tuple[int, int], cells_per_chunk: int) -> Iterator[Rect]:
    """Rectangles (u0, u1, v0, v1) of LR cells covering the grid: whole rows when they fit."""
    hl, wl = grid
    if cells_per_chunk >= wl:
        rows = cells_per_chunk // wl
        for u0 in range(0, hl, rows):
            yield u0, min(u0 + rows, hl), 0, wl
    else:
        for u0 in range(hl):
            for v0 in range(0, wl, cells_per_chunk):
                yield u0, u0 + 1, v0, min(v0 + cells_per_chunk, wl)


def render_chunks(maps: Maps, values: torch.Tensor, guide: torch.Tensor, chunk_size: int = CHUNK_SIZE
                  ) -> Iterator[Tuple[Rect, torch.Tensor]]:
    """Yield ``((u0, u1, v0, v1), out)`` per chunk of LR cells, ``out`` [n_cells, s*s, C] cell-major.

    ``values`` [1, C, Hl, Wl] (features, or the LR image in the fit), ``guide`` [1, 3, s*Hl, s*Wl].
    Differentiable in ``maps``: the coefficients are rebuilt per chunk, so each chunk has its own graph.
    """
    hl, wl = values.shape[-2:]
    scale = guide.shape[-2] // hl
    if guide.shape[-2:] != (scale * hl, scale * wl):
        raise ValueError(f"guide must be an integer multiple of the LR grid {hl}x{wl}, got {tuple(guide.shape)}")
    dtype, device = values.dtype, values.device
    radius = radius_map(maps, guide.shape[-2:])
    radius_cells = _to_cells(radius[None], scale)[..., 0]  # [Hl, Wl, s*s]
    guide_cells = _to_cells(guide[0], scale)  # [Hl, Wl, s*s, 3]
    guide_lr = F.interpolate(guide, size=(hl, wl), mode="bilinear", align_corners=False)[0].flatten(1).t()
    values_t = values[0].flatten(1).t()  # [Hl*Wl, C]
    pixel = torch.arange(scale, device=device, dtype=dtype)
    widest = _disc_offsets(int(radius.max()), device)[0].numel()
    cells_per_chunk = max(1, chunk_size // (widest * (scale * scale + values_t.shape[1])))
    for u0, u1, v0, v1 in _chunk_rects((hl, wl), cells_per_chunk):
        r_cells = radius_cells[u0:u1, v0:v1].reshape(-1, scale * scale, 1)
        r_top = int(r_cells.max())
        off_y, off_x = _disc_offsets(r_top, device)
        u = torch.arange(u0, u1, device=device).repeat_interleave(v1 - v0)[:, None]
        v = torch.arange(v0, v1, device=device).repeat(u1 - u0)[:, None]
        ui, vi = (u + off_y).clamp(0, hl - 1), (v + off_x).clamp(0, wl - 1)  # [n, K]
        index = ui * wl + vi
        # pixel minus neighbour-cell centre in HR pixels; dy varies with the pixel row i only, dx with
        # the column j only: [n, s, K]
        dy = (u * scale).to(dtype)[:, None] + pixel[None, :, None] - ((ui + 0.5) * scale - 0.5).to(dtype)[:, None]
        dx = (v * scale).to(dtype)[:, None] + pixel[None, :, None] - ((vi + 0.5) * scale - 0.5).to(dtype)[:, None]
        # F.embedding, not [index]: its CPU backward is deterministic (index_put_'s accumulation
        # is not), so a fit is bitwise reproducible with any number of threads
        coef_a, coef_b, coef_c, coef_d = F.embedding(index, _coefficients(maps))[:, None].unbind(-1)  # [n, 1, K]
        g = guide_cells[u0:u1, v0:v1].reshape(-1, scale * scale, 3)
        dist2 = torch.cdist(g, guide_lr[index], compute_mode="donot_use_mm_for_euclid_dist").square_()
        logw = ((coef_c * dy * dy)[:, :, None] + (coef_a * dx * dx)[:, None]
                + dy[:, :, None] * (coef_b * dx)[:, None]).view(dist2.shape) + coef_d * dist2
        if int(r_cells.min()) < r_top:
            logw = logw.masked_fill((off_y * off_y + off_x * off_x) > r_cells * r_cells, -math.inf)
        weights = torch.softmax(logw, dim=-1)
        yield (u0, u1, v0, v1), torch.bmm(weights, F.embedding(index, values_t))


def render(maps: Maps, values: torch.Tensor, guide: torch.Tensor, chunk_size: int = CHUNK_SIZE,
           out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The kernel: values [1, C, Hl, Wl], guide [1, 3, s*Hl, s*Wl] -> [1, C, s*Hl, s*Wl] (written into
    ``out`` when given, e.g. a slice of a batch's output, else into a new tensor)."""
    (c, hl, wl), scale = values.shape[1:], guide.shape[-2] // values.shape[-2]
    if out is None:
        out = values.new_empty(1, c, scale * hl, scale * wl)
    out5 = out[0].view(c, hl, scale, wl, scale)
    for (u0, u1, v0, v1), chunk in render_chunks(maps, values, guide, chunk_size):
        out5[:, u0:u1, :, v0:v1, :] = chunk.view(u1 - u0, v1 - v0, scale, scale, c).permute(4, 0, 2, 1, 3)
    return out


def downsample(hr: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
    """The fit's input: bicubic (a = -0.75, align_corners=False, no antialias) [1,3,Hh,Wh] -> [1,3,Hl,Wl]."""
    return F.interpolate(hr, size=grid, mode="bicubic", align_corners=False)


def loss_backward(maps: Maps, lr_image: torch.Tensor, hr: torch.Tensor, chunk_size: int = CHUNK_SIZE
                  ) -> torch.Tensor:
    """``mean |render(maps, lr_image, hr) - hr|`` (L1 over 3*Hh*Wh), back-propagated chunk by chunk:
    the gradients accumulate into the maps' ``.grad``. Returns the loss (0-d, detached)."""
    scale = hr.shape[-2] // lr_image.shape[-2]
    target = _to_cells(hr[0], scale)
    total = hr.new_zeros(())
    for (u0, u1, v0, v1), pred in render_chunks(maps, lr_image, hr, chunk_size):
        loss = (pred - target[u0:u1, v0:v1].reshape(pred.shape)).abs().sum() / hr.numel()
        loss.backward()
        total += loss.detach()
    return total


StepCallback = Callable[[int, float, float, Maps], None]


def fit_maps(hr: torch.Tensor, grid: Tuple[int, int], steps: int = STEPS, lr: float = LR,
             lr_gamma: float = LR_GAMMA, init: Optional[Maps] = None, chunk_size: int = CHUNK_SIZE,
             callback: Optional[StepCallback] = None, progress: bool = False) -> Maps:
    """Fit the four maps [1,1,Hl,Wl] to one image ``hr`` [1, 3, s*Hl, s*Wl] (RGB in [0, 1]).

    Per step t (the official ``UPA()`` loop without AMP): zero the gradients, L1 loss of the kernel
    applied to ``downsample(hr)`` and guided by ``hr`` against ``hr``, backward, Adam step
    (betas 0.9/0.999, eps 1e-8) with learning rate ``lr * lr_gamma**t``. ``init`` (default
    :func:`init_maps`) is copied, never modified. ``callback(t, loss, step_lr, maps)`` runs after
    each step. Deterministic: the method draws no random numbers. Gradients are enabled inside, so
    the fit also works when called under ``torch.no_grad()`` or ``torch.inference_mode()``.
    """
    with torch.inference_mode(False), torch.enable_grad():  # the fit also runs inside no_grad/inference_mode
        hr = hr.clone()  # an ordinary tensor, even if ``hr`` was made under inference_mode
        start = init if init is not None else init_maps(grid, hr.dtype, hr.device)
        maps = {name: start[name].detach().to(hr).clone().requires_grad_(True) for name in PARAM_NAMES}
        lr_image = downsample(hr, grid)
        optimizer = torch.optim.Adam(list(maps.values()), lr=lr)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: lr_gamma ** t)
        bar = tqdm(total=steps, desc="upsample_anything fit", leave=False, disable=not progress)
        for step in range(steps):
            optimizer.zero_grad()
            loss = loss_backward(maps, lr_image, hr, chunk_size)
            step_lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            schedule.step()
            if callback is not None:
                callback(step, loss.item(), step_lr, maps)
            bar.set_description(f"upsample_anything fit, loss {loss.item():.4g}")
            bar.update(1)
        bar.close()
    return {name: value.detach() for name, value in maps.items()}
