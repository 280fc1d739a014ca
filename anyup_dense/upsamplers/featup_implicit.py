"""FeatUp's implicit upsampler (Fu et al., ICLR 2024, "FeatUp (Implicit)"; MIT): a per-image fit.

For each image a small Fourier-feature MLP U (pixel coordinates and colour -> a P-dim PCA space of
the backbone features) is fitted so that jittered, learned-downsampled copies of U(image) match the
backbone's features of the equally jittered image; the result is the PCA-unprojection of U(image).
Pieces and parity notes: :mod:`anyup_dense.upsamplers.featup_implicit_layers`; paper
arXiv 2403.10516.

    up = FeatUpImplicit()                      # official settings: 1200 NAdam steps, 3000 views
    out = up(features, image, featurizer=f)    # features [B,D,f,f], image [B,3,H,W] -> [B,D,H,W]
    fits = up.fit(image, f)                    # one FittedImage per image (model, PCA, losses)
    out = up.apply_fits(fits, image, output_size)

Conventions:
  * ``requires_featurizer``: ``featurizer`` is a callable, ImageNet-normalised images [N,3,R,R] ->
    [N,D,f,f] (R = ``model_resolution``); ``features`` must be its output on the image resized to
    R x R (they are used for checks only: the fit featurises its own jittered views).
  * The fit runs on that R x R view (bilinear resize, align_corners=False, when the image has another
    size), as the official script fits its 224 x 224 crop; the result is U evaluated there, resized
    bilinearly to ``output_size`` when that differs.
  * The official pipeline appends a (parameter-free at init) LayerNorm over channels to the backbone
    (``use_norm``); then targets and result live in that normalised space. ``use_norm=False`` fits the
    raw features.
  * Views are featurised lazily, when first drawn (the first ``pca_batch`` up front for the PCA),
    and cached in PCA space: a whole official fit touches most of the 3000 views, at most
    n_images * P * f * f values (393 MB float32 for P = 128, f = 16).
  * Randomness (init, jitter bank, dropout masks, drawn views) comes from ``seed`` through
    :class:`Draws`; a seeded fit is bitwise deterministic on a given device. Pass another ``draws``
    object with the same methods to :meth:`FeatUpImplicit.fit` to replay stored draws.
  * Compute dtype: float64 inputs fit in float64, everything else in float32 (the result is cast back
    to the features' dtype). Float32 fits are not close to float64 ones after a few steps (frequencies
    up to e^10: spec, section 7); parity is a float64 property.
  * Cost on CPU is large (the official fit runs 1200 steps on a GPU); ``progress=True`` shows a tqdm
    bar per image. Memory is bounded by ``chunk_size`` (elements per chunk): see the layers module.
"""
import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch.hub import tqdm  # tqdm when installed, else torch.hub's silent stand-in

from anyup_dense.registry import UPSAMPLERS
from anyup_dense.upsamplers.base import Featurizer, SizeArg, Upsampler, resolve_output_size, validate_inputs
from anyup_dense.upsamplers.featup_implicit_layers import (DROPOUT_P, FeatUpImplicitModel, Jitter, Terms, apply_jitter,
                                                           fit_pca, project, scaler_stats, step_backward,
                                                           unproject, window_count)

StepCallback = Callable[[int, Terms, FeatUpImplicitModel], None]
CHUNK_SIZE = 1 << 23
DRAW_CHUNK = 1 << 20  # uniforms per draw of a large mask: a multiple of 16, so on CPU the pieces equal one draw


class Draws:
    """Every random draw of a fit, from one seeded generator on ``device`` (bool masks: True = kept,
    keep probability 1 - p). Replace it (same methods) to replay stored draws."""

    def __init__(self, seed: int, device=None, p: float = DROPOUT_P):
        self.device, self.p = torch.device(device or "cpu"), p
        self.generator = torch.Generator(device=self.device).manual_seed(seed)

    def _uniform(self, *shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=self.generator, device=self.device)

    def jitter(self, n: int, size: int, max_pad: int, max_zoom: float, use_flips: bool) -> Jitter:
        """The official view sampler for a square ``size`` map: flip with prob. 1/2 (if ``use_flips``),
        zoom uniform in [1, max_zoom) with prob. 1/2 (float32 values), crop offsets uniform over the
        zoomed, padded map."""
        u = self._uniform(n, 5).cpu().double()
        flip = (u[:, 0] > 0.5) & use_flips
        zoom = torch.where(u[:, 1] > 0.5, u[:, 2] * (max_zoom - 1) + 1, 1.0).float().double()
        valid = ((size + 2 * max_pad) * zoom).floor() - size + 1
        return Jitter((u[:, 3] * valid).long(), (u[:, 4] * valid).long(), zoom, flip)

    def channel_keep(self, step: int, layer: int, channels: int) -> torch.Tensor:
        """Keep mask [1,channels,1,1] of U's dropout ``layer`` (3 or 6) at ``step``."""
        return self._uniform(1, channels, 1, 1) >= self.p

    def views(self, step: int, count: int, n_images: int) -> torch.Tensor:
        """``count`` view indices (int64, with replacement) in [0, n_images)."""
        return torch.randint(n_images, (count,), generator=self.generator, device=self.device).cpu()

    def _keep(self, shape: Sequence[int], strict: bool) -> torch.Tensor:
        """``rand(shape) > p`` (``strict``) or ``>= p`` as a bool mask. On CPU the uniforms are drawn
        ``DRAW_CHUNK`` at a time (same numbers, a quarter of the memory of one float32 draw per mask
        element at most ``DRAW_CHUNK`` floats); CUDA's Philox draws are not split-invariant, so whole."""
        if self.device.type != "cpu":
            u = self._uniform(*shape)
            return u > self.p if strict else u >= self.p
        keep = torch.empty(shape, dtype=torch.bool)
        flat = keep.view(-1)
        for first in range(0, flat.numel(), DRAW_CHUNK):
            u = self._uniform(min(DRAW_CHUNK, flat.numel() - first))
            flat[first:first + u.numel()] = u > self.p if strict else u >= self.p
        return keep

    def patch_keep(self, step: int, view: int, shape: Sequence[int]) -> torch.Tensor:
        """Dropout keep mask [f,f,k*k,P+1] on the downsampler's logit inputs for batch element ``view``."""
        return self._keep(shape, strict=False)

    def logit_keep(self, step: int, view: int, shape: Sequence[int]) -> torch.Tensor:
        """The official ``rand > 0.2`` logit mask [f,f,1] for batch element ``view``."""
        return self._keep(shape, strict=True)


@dataclass
class FittedImage:
    """The fit of one image: ``model`` (fitted parameters, official names), the PCA (``components``
    [P,D], ``mean`` [D]), the scaler statistics of the fit view (min, scale [1,3,1,1]) and the per-step
    ``losses`` [steps, 5] (rec, mag, tv, blur_pin unweighted; total)."""
    model: FeatUpImplicitModel
    components: torch.Tensor
    mean: torch.Tensor
    stats: Tuple[torch.Tensor, torch.Tensor]
    losses: torch.Tensor


def nadam(model: torch.nn.Module, lr: float) -> torch.optim.NAdam:
    """torch's NAdam (official: torch defaults) with its step count and momentum product in float64.

    torch keeps those two scalars in the default dtype; the official float64 reference ran with
    float64 as the default, and with float32 scalars the updates differ by ~1e-8 relative. The
    state is pre-filled in NAdam's own layout (keys of its state_dict), so the optimizer is unchanged."""
    optimizer = torch.optim.NAdam(model.parameters(), lr=lr)
    for p in model.parameters():
        optimizer.state[p] = {"step": torch.tensor(0.0, dtype=torch.float64),
                              "mu_product": torch.tensor(1.0, dtype=torch.float64),
                              "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                              "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
    return optimizer


def fit_model(model: FeatUpImplicitModel, image: torch.Tensor, targets: Callable[[torch.Tensor], torch.Tensor],
              jitter: Jitter, draws, steps: int, lr: float, inner_batch: int, max_pad: int,
              loss_weights: Tuple[float, float, float], chunk_size: int = CHUNK_SIZE,
              callback: Optional[StepCallback] = None, progress: bool = False) -> torch.Tensor:
    """Fit ``model`` in place on ``image`` [1,3,R,R] (compute dtype, the model's) with :func:`nadam`; returns the losses [steps, 5]. Step t draws U's two dropout masks, then
    ``inner_batch`` view indices into ``jitter`` / ``targets`` (callable: int64 indices -> [n,P,f,f]),
    then each view's patch and logit masks. ``callback(t, terms, model)`` runs after each step."""
    stats = scaler_stats(image)
    proj_dim, channels = model.outlier_detector.in_channels, model.upsampler[2].norm.normalized_shape[0]
    down = model.downsampler
    patch_shape = (down.final_size, down.final_size, down.kernel_size ** 2, proj_dim + 1)
    losses = []
    optimizer = nadam(model, lr)
    bar = tqdm(total=steps, desc="featup_implicit fit", leave=False, disable=not progress)
    for step in range(steps):
        keep = (draws.channel_keep(step, 3, channels), draws.channel_keep(step, 6, proj_dim))
        views = draws.views(step, inner_batch, len(jitter.x))

        def view_keeps(j: int):
            return draws.patch_keep(step, j, patch_shape), draws.logit_keep(step, j, patch_shape[:2] + (1,))

        terms = step_backward(model, image, stats, targets(views).to(image), jitter, views.tolist(), keep,
                              view_keeps, max_pad, loss_weights, chunk_size)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(torch.stack(terms))
        if callback is not None:
            callback(step, terms, model)
        bar.set_description(f"featup_implicit fit, loss {terms.loss.item():.4g}")
        bar.update(1)
    bar.close()
    return torch.stack(losses) if losses else image.new_zeros(0, 5)


class ViewBank:
    """The jittered views' backbone features in PCA space, featurised when first asked for.

    ``__call__(indices)`` -> [n,P,f,f]. The PCA is fitted on the pixels of the first ``pca_batch``
    views (featurised on construction)."""

    def __init__(self, image: torch.Tensor, jitter: Jitter, max_pad: int, featurize: Featurizer, proj_dim: int,
                 pca_batch: int, batch_size: int):
        self.image, self.jitter, self.max_pad, self.featurize, self.batch_size = image, jitter, max_pad, featurize, batch_size
        first = torch.arange(min(pca_batch, len(jitter.x)))
        raw = self._featurize(first)
        self.components, self.mean = fit_pca(raw, proj_dim)
        self.cache: Dict[int, torch.Tensor] = dict(zip(first.tolist(), project(raw, self.components, self.mean)))

    def _featurize(self, indices: torch.Tensor) -> torch.Tensor:
        out = []
        for chunk in indices.split(self.batch_size):
            views = torch.cat([apply_jitter(self.image, self.max_pad, self.jitter, int(i)) for i in chunk])
            out.append(self.featurize(views))
        return torch.cat(out)

    def __call__(self, indices: torch.Tensor) -> torch.Tensor:
        missing = sorted(set(indices.tolist()) - set(self.cache))
        if missing:
            raw = self._featurize(torch.tensor(missing))
            self.cache.update(zip(missing, project(raw, self.components, self.mean)))
        return torch.stack([self.cache[i] for i in indices.tolist()])


def _check(name: str, value, kind: str) -> None:
    """Raise ``ValueError`` unless ``value`` is of ``kind``: 'int>0', 'int>=0', 'number>0', 'number>=0', 'bool'."""
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be True or False, got {value!r}")
        return
    integer = kind.startswith("int")
    types = (int,) if integer else (int, float)
    ok = not isinstance(value, bool) and isinstance(value, types) and math.isfinite(value)
    ok = ok and (value > 0 if kind.endswith(">0") else value >= 0)
    if not ok:
        what = ("a positive" if kind.endswith(">0") else "a non-negative") + (" int" if integer else " finite number")
        raise ValueError(f"{name} must be {what}, got {value!r}")


class FeatUpImplicit(Upsampler):
    """FeatUp's implicit upsampler: fit per image, then evaluate (official settings by default).

    Args:
        model_resolution: R, the side of the square view the featurizer takes and the fit runs on
            (official 224).
        steps: NAdam steps per image (official 1200; 500 for ResNet-50).
        lr: NAdam learning rate (torch default 2e-3, as official).
        inner_batch: jittered views per step (official 10).
        n_images: size of the jitter bank (official 3000).
        pca_batch: views whose features fit the PCA (official 50).
        proj_dim: P, the PCA dimension the MLP predicts (official 128; at most the feature channels D).
        n_freqs: Fourier frequencies (official 30). color_feats: Fourier features of the colour too.
        kernel_size: the downsampler's window k (official 29 for ViT-S/14 and /16 grids at 224); it must
            give exactly f windows of stride (R - k) // (f - 1) (the error lists the values that do).
        max_pad, max_zoom, use_flips: jitter (official 30, 1.8, True).
        mag_weight, mag_tv_weight, blur_pin: loss weights (official 0.001, 0.05, 0.1).
        use_norm: LayerNorm the featurizer's output over channels first (official True).
        seed: seeds the init and every draw (official ``seed_everything(0)``).
        featurize_batch: views per featurizer call (official 64).
        chunk_size: elements per chunk of the MLP and the downsampler; bounds memory.
        progress: a tqdm bar over each image's fit.
        check_finite: reject NaN/Inf inputs.
    """

    requires_featurizer = True

    def __init__(self, model_resolution: int = 224, steps: int = 1200, lr: float = 2e-3, inner_batch: int = 10,
                 n_images: int = 3000, pca_batch: int = 50, proj_dim: int = 128, n_freqs: int = 30,
                 color_feats: bool = True, kernel_size: int = 29, max_pad: int = 30, max_zoom: float = 1.8,
                 use_flips: bool = True, mag_weight: float = 0.001, mag_tv_weight: float = 0.05,
                 blur_pin: float = 0.1, use_norm: bool = True, seed: int = 0, featurize_batch: int = 64,
                 chunk_size: int = CHUNK_SIZE, progress: bool = False, check_finite: bool = False):
        super().__init__(check_finite=check_finite)
        for name, value, kind in (
                ("model_resolution", model_resolution, "int>0"), ("steps", steps, "int>=0"), ("lr", lr, "number>0"),
                ("inner_batch", inner_batch, "int>0"), ("n_images", n_images, "int>0"),
                ("pca_batch", pca_batch, "int>0"), ("proj_dim", proj_dim, "int>0"), ("n_freqs", n_freqs, "int>0"),
                ("color_feats", color_feats, "bool"), ("kernel_size", kernel_size, "int>0"),
                ("max_pad", max_pad, "int>=0"), ("max_zoom", max_zoom, "number>0"), ("use_flips", use_flips, "bool"),
                ("mag_weight", mag_weight, "number>=0"), ("mag_tv_weight", mag_tv_weight, "number>=0"),
                ("blur_pin", blur_pin, "number>=0"), ("use_norm", use_norm, "bool"), ("seed", seed, "int>=0"),
                ("featurize_batch", featurize_batch, "int>0"), ("chunk_size", chunk_size, "int>0"),
                ("progress", progress, "bool")):
            _check(name, value, kind)
        if max_zoom < 1:
            raise ValueError(f"max_zoom must be >= 1, got {max_zoom!r}")
        if max_pad >= model_resolution:
            raise ValueError(f"max_pad ({max_pad}) must be smaller than model_resolution ({model_resolution}) "
                             f"(reflect padding)")
        if kernel_size > model_resolution:
            raise ValueError(f"kernel_size ({kernel_size}) must be at most model_resolution ({model_resolution})")
        self.model_resolution, self.steps, self.lr, self.inner_batch = model_resolution, steps, float(lr), inner_batch
        self.n_images, self.pca_batch, self.proj_dim, self.n_freqs = n_images, pca_batch, proj_dim, n_freqs
        self.color_feats, self.kernel_size, self.max_pad, self.max_zoom = color_feats, kernel_size, max_pad, float(max_zoom)
        self.use_flips, self.use_norm, self.seed = use_flips, use_norm, seed
        self.loss_weights = (float(mag_weight), float(mag_tv_weight), float(blur_pin))
        self.featurize_batch, self.chunk_size, self.progress = featurize_batch, chunk_size, progress

    def check_geometry(self, channels: int, grid: int) -> None:
        """``ValueError`` unless a featurizer grid ``grid`` x ``grid`` of ``channels`` fits the settings."""
        r, k = self.model_resolution, self.kernel_size
        if grid < 2 or grid > r:
            raise ValueError(f"the feature grid must be at least 2x2 and at most model_resolution ({r}), got {grid}")
        if window_count(r, k, grid) != grid:
            valid = [c for c in range(1, r + 1) if window_count(r, c, grid) == grid]
            raise ValueError(f"kernel_size {k} gives {window_count(r, k, grid)} windows of stride "
                             f"{(r - k) // (grid - 1)} on the {r}x{r} view, not the feature grid's {grid}; "
                             f"kernel sizes that fit: {_ranges(valid)}")
        if self.proj_dim > channels:
            raise ValueError(f"proj_dim ({self.proj_dim}) must be at most the feature channels ({channels})")

    def view(self, image: torch.Tensor) -> torch.Tensor:
        """[B,3,H,W] -> the R x R fit view in the compute dtype (float64 stays, else float32)."""
        dtype = torch.float64 if image.dtype == torch.float64 else torch.float32
        r = self.model_resolution
        image = image.to(dtype)
        if tuple(image.shape[-2:]) != (r, r):
            image = F.interpolate(image, size=(r, r), mode="bilinear", align_corners=False)
        return image

    def _featurizer(self, featurizer: Featurizer, dtype, expected: Optional[Tuple[int, int]]) -> Featurizer:
        """Wrap ``featurizer``: no grad, shape check against (D, f) (from the first call if ``expected``
        is None), optional LayerNorm, compute dtype."""
        if not callable(featurizer):
            raise ValueError(f"featurizer must be a callable [N,3,R,R] -> [N,D,f,f], got {type(featurizer).__name__}")
        shape = {} if expected is None else {"d_f": expected}

        def featurize(views: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                out = featurizer(views)
            is_map = isinstance(out, torch.Tensor) and out.dim() == 4
            d, f = shape.setdefault("d_f", tuple(out.shape[1:3])) if is_map else shape.get("d_f", ("D", "f"))
            if not is_map or tuple(out.shape) != (views.shape[0], d, f, f):
                got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise ValueError(f"featurizer returned {got} for {views.shape[0]} views of {views.shape[-2]}x"
                                 f"{views.shape[-1]}; expected [{views.shape[0]}, {d}, {f}, {f}]")
            out = out.to(dtype)
            return F.layer_norm(out.movedim(1, -1), out.shape[1:2]).movedim(-1, 1) if self.use_norm else out

        return featurize

    def new_model(self, proj_dim: int, grid: int, dtype, device) -> FeatUpImplicitModel:
        """The official init under ``seed`` (float32 draws, then cast), without touching the global RNG."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            model = FeatUpImplicitModel(proj_dim, self.n_freqs, self.color_feats, self.kernel_size, grid)
        return model.to(dtype=dtype, device=device)

    def fit(self, image: torch.Tensor, featurizer: Featurizer, draws=None, callback: Optional[StepCallback] = None,
            expected: Optional[Tuple[int, int]] = None) -> List[FittedImage]:
        """Fit each image of ``image`` [B,3,H,W] (ImageNet-normalised) on its own; one :class:`FittedImage`
        each. ``draws``: a :class:`Draws`-like source (default: ``Draws(seed)`` per image, so every image
        is fitted as if alone). ``expected``: (D, f) the featurizer's output must have."""
        if not isinstance(image, torch.Tensor) or image.dim() != 4 or image.shape[1] != 3:
            got = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise ValueError(f"image must be a [B, 3, H, W] tensor, got {got}")
        if not image.is_floating_point():
            raise ValueError(f"image must be a floating-point tensor, got dtype {image.dtype}")
        with torch.inference_mode(False), torch.enable_grad():  # also inside no_grad / inference_mode
            return self._fit(image.clone(), featurizer, draws, callback, expected)

    def _fit(self, image, featurizer, draws, callback, expected) -> List[FittedImage]:
        views = self.view(image)
        featurize = self._featurizer(featurizer, views.dtype, expected)
        fits = []
        for b in range(image.shape[0]):
            source = Draws(self.seed, image.device) if draws is None else draws
            jitter = source.jitter(self.n_images, self.model_resolution, self.max_pad, self.max_zoom, self.use_flips)
            bank = ViewBank(views[b:b + 1], jitter, self.max_pad, featurize, self.proj_dim, self.pca_batch,
                            self.featurize_batch)
            channels, grid = bank.mean.shape[0], next(iter(bank.cache.values())).shape[-1]
            self.check_geometry(channels, grid)
            model = self.new_model(self.proj_dim, grid, views.dtype, views.device)
            losses = fit_model(model, views[b:b + 1], bank, jitter, source, self.steps, self.lr, self.inner_batch,
                               self.max_pad, self.loss_weights, self.chunk_size, callback, self.progress)
            fits.append(FittedImage(model, bank.components, bank.mean, scaler_stats(views[b:b + 1]), losses))
        return fits

    def apply_fits(self, fits: Sequence[FittedImage], image: torch.Tensor, output_size: SizeArg = None) -> torch.Tensor:
        """Evaluate the fitted U (eval mode) on each image's R x R view, unproject, resize bilinearly to
        ``output_size`` (default: the image size) -> [B,D,H',W'] in the compute dtype."""
        if not isinstance(image, torch.Tensor) or image.dim() != 4:
            raise ValueError(f"image must be a [B, 3, H, W] tensor, got {type(image).__name__}")
        if len(fits) != image.shape[0]:
            raise ValueError(f"fits must hold one FittedImage per image ({image.shape[0]}), got {len(fits)}")
        size = resolve_output_size(output_size, tuple(image.shape[-2:]))
        views = self.view(image)
        outs = []
        for b, fit in enumerate(fits):
            hr = fit.model.evaluate(views[b:b + 1], fit.stats, self.chunk_size)
            outs.append(unproject(hr, fit.components, fit.mean))
        out = torch.cat(outs) if len(outs) > 1 else outs[0]  # no copy of a lone [1,D,R,R] result
        if tuple(out.shape[-2:]) != size:
            out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
        return out

    def forward(self, features: torch.Tensor, image: torch.Tensor, output_size: SizeArg = None, *,
                featurizer: Optional[Featurizer] = None) -> torch.Tensor:
        """features [B,D,f,f] (``featurizer`` on the R x R view), image [B,3,H,W] -> [B,D,H',W']."""
        size = validate_inputs(features, image, output_size, check_finite=self.check_finite)
        if featurizer is None:
            raise ValueError("featup_implicit fits on the featurizer's features of jittered views: pass featurizer= "
                             "(a callable [N,3,R,R] -> [N,D,f,f])")
        d, h, w = features.shape[1:]
        if h != w:
            raise ValueError(f"features must be the square grid of the featurizer at {self.model_resolution}x"
                             f"{self.model_resolution}; got {h}x{w}")
        self.check_geometry(d, h)
        fits = self.fit(image, featurizer, expected=(d, h))
        return self.apply_fits(fits, image, size).to(features.dtype)

    def extra_repr(self) -> str:
        return (f"model_resolution={self.model_resolution}, steps={self.steps}, lr={self.lr}, "
                f"inner_batch={self.inner_batch}, n_images={self.n_images}, proj_dim={self.proj_dim}, "
                f"n_freqs={self.n_freqs}, kernel_size={self.kernel_size}, seed={self.seed}")


def _ranges(values: Sequence[int]) -> str:
    """[1, 2, 3, 7] -> '1-3, 7'; [] -> 'none'."""
    parts, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            parts.append(str(start) if start == v else f"{start}-{v}")
            start = None
    return ", ".join(parts) or "none"


@UPSAMPLERS.register("featup_implicit")
def build_featup_implicit(pretrained=None, **kwargs) -> FeatUpImplicit:
    """FeatUp's implicit upsampler with the official fit settings unless overridden (see
    :class:`FeatUpImplicit`). It fits every image from scratch, so ``pretrained`` must be None."""
    if pretrained is not None:
        raise ValueError(f"featup_implicit has no weights; pretrained must be None, got {pretrained!r}")
    return FeatUpImplicit(**kwargs)
