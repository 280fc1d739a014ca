"""FeatUp's implicit upsampler (Fu et al., ICLR 2024; github.com/mhamilton723/FeatUp @ 6b5a6c0, MIT):
the network, the jitter, the learned downsampler and the loss of one optimisation step.

Follows the official code at that commit. Parameter names are the official ones (``upsampler.<i>``,
``downsampler.*``, ``outlier_detector.*``), so an official ``state_dict`` loads strictly. Every random
draw of a step (the two channel-dropout masks, the views drawn, the attention-input dropout mask and
the logit mask) is an explicit argument here; :mod:`anyup_dense.upsamplers.featup_implicit` draws them.

Memory is bounded by chunking, with the same result as the whole-image computation:
  * the per-pixel network is evaluated ``chunk_size`` elements at a time (whole image rows): a
    no-grad pass gives ``hr``; the loss is back-propagated to ``hr`` and then, chunk by chunk, the
    network is re-evaluated with gradients and back-propagated with its slice of ``hr.grad``;
  * each jittered view goes through the downsampler on its own, in bands of output rows: a band jitters
    and blurs only the rows its windows read, from the slab of ``hr`` rows those gather (``|hr|`` and
    ``hr`` are stacked for that slab only), and its loss is back-propagated to that slab (added into
    one gradient map), so no whole jittered view and no whole [1,P+1,H,W] stack exists;
  * ``hr`` is freed before U's chunked re-evaluation, so a step holds at most two full maps (``hr``
    and its gradient);
  * the blur-pin term and the magnitude's backward run in bands of rows too;
  * the jitter (reflect pad, bilinear zoom, crop, flip) is a gather of the rows and columns it needs,
    so neither the padded nor the zoomed map is materialised.
"""
import math
from typing import Callable, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from anyup_dense.upsamplers.channel_norm import ChannelNorm

DROPOUT_P = 0.2
SCALER_EPS = 1e-4
SCALE_MIN = 1e-4
SCALE_OFFSET = 0.1
OUTLIER_INIT_FACTOR = 0.1


class Jitter(NamedTuple):
    """The jitter of ``n`` views: crop offsets ``x`` (rows), ``y`` (columns) int64 [n] into the padded,
    zoomed map; ``zoom`` float [n] (1: no zoom); ``flip`` bool [n] (reverse the width axis)."""
    x: torch.Tensor
    y: torch.Tensor
    zoom: torch.Tensor
    flip: torch.Tensor


class Terms(NamedTuple):
    """The four unweighted loss terms of one step (0-d tensors) and their weighted sum."""
    rec: torch.Tensor
    mag: torch.Tensor
    tv: torch.Tensor
    blur_pin: torch.Tensor
    loss: torch.Tensor


def start_dim(n_freqs: int, color_feats: bool) -> int:
    """Channels of the Fourier features: sin and cos of n_freqs x (y, x[, r, g, b]) [+ r, g, b]."""
    return 5 * n_freqs * 2 + 3 if color_feats else 2 * n_freqs * 2


def window_count(size: int, kernel_size: int, final_size: int) -> int:
    """Windows the downsampler's unfold makes along a side of ``size`` pixels (it must be final_size)."""
    stride = (size - kernel_size) // (final_size - 1)
    return (size - kernel_size) // stride + 1 if stride > 0 else 0


def scaler_stats(image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Layer 0 (MinMaxScaler) statistics of ``image`` [1,3,H,W]: per-channel (min, max(max - min, 1e-4)),
    each [1,3,1,1]; the scaled image is ``(image - min) / scale - 0.5``."""
    flat = image.transpose(0, 1).flatten(1)
    low = flat.min(dim=1).values.view(1, -1, 1, 1)
    return low, (flat.max(dim=1).values.view(1, -1, 1, 1) - low).clamp_min(SCALER_EPS)


def channel_dropout(x: torch.Tensor, keep: Optional[torch.Tensor], p: float = DROPOUT_P) -> torch.Tensor:
    """Dropout with a given keep mask (bool, broadcastable to ``x``): ``x * keep / (1 - p)``; None: x."""
    return x if keep is None else x * keep * (1 / (1 - p))


def blur5(x: torch.Tensor) -> torch.Tensor:
    """kornia's ``gaussian_blur2d(x, 5, (1, 1))``: separable 5-tap Gaussian (sigma 1, taps
    exp(-n^2/2) / sum, n = -2..2), reflect border, horizontal pass first. [B,C,H,W] -> same.
    (Weighted sums of shifted slices, in place: depthwise 1x5 convolutions are slow on CPU.)"""
    return _blur_rows(F.pad(_blur_columns(x), (0, 0, 2, 2), mode="reflect"))


def _blur_taps():
    taps = [math.exp(-n * n / 2) for n in range(-2, 3)]
    return [t / sum(taps) for t in taps]


def _blur_columns(x: torch.Tensor) -> torch.Tensor:
    """blur5's horizontal pass (reflect border): [B,C,H,W] -> same."""
    taps, w = _blur_taps(), x.shape[-1]
    x = F.pad(x, (2, 2, 0, 0), mode="reflect")
    out = x[..., :w] * taps[0]
    for i in range(1, 5):
        out.add_(x[..., i:i + w], alpha=taps[i])  # in place: one buffer per pass
    return out


def _blur_rows(x: torch.Tensor) -> torch.Tensor:
    """blur5's vertical pass over rows that already hold the 2-row borders: [B,C,r+4,W] -> [B,C,r,W]."""
    taps, h = _blur_taps(), x.shape[-2] - 4
    out = x[..., :h, :] * taps[0]
    for i in range(1, 5):
        out.add_(x[..., i:i + h, :], alpha=taps[i])
    return out


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Reflect-border indices (no edge repeat) into [0, size)."""
    return torch.where(index < 0, -index, torch.where(index > size - 1, 2 * (size - 1) - index, index))


def magnitude(x: torch.Tensor) -> torch.Tensor:
    """L2 norm over channels, [B,C,H,W] -> [B,1,H,W]."""
    return x.square().sum(1, keepdim=True).sqrt()


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """FeatUp's TV: summed squared row and column differences over B*C*H*W."""
    return ((x[:, :, 1:] - x[:, :, :-1]).square().sum() + (x[..., 1:] - x[..., :-1]).square().sum()) / x.numel()


def _jitter_axis(size: int, pad: int, offset: int, zoom: float, dtype, device,
                 positions: Optional[torch.Tensor] = None):
    """For one axis of the view: the two source indices into the *unpadded* map and the weight of the
    second, per output position (reflect pad by ``pad``; bilinear zoom, align_corners=False, source
    coordinate from the given factor, ``(d + 0.5) / zoom - 0.5`` clamped at 0; crop at ``offset``).
    ``positions``: int64 positions of the view along the axis to compute (default: all ``size``)."""
    padded = size + 2 * pad
    if positions is None:
        positions = torch.arange(size, device=device)
    dst = (positions + offset).to(torch.float64)
    if zoom > 1:
        src = ((dst + 0.5) / zoom - 0.5).clamp_min(0)
        if int(padded * zoom) < offset + size:
            raise ValueError(f"jitter crop at {offset} of {size} exceeds the zoomed size {int(padded * zoom)}")
        first = src.floor().long()
        weight = (src - first).to(dtype)
        second = (first + 1).clamp_max(padded - 1)
    else:
        if padded < offset + size:
            raise ValueError(f"jitter crop at {offset} of {size} exceeds the padded size {padded}")
        first = second = dst.long()
        weight = torch.zeros(len(dst), dtype=dtype, device=device)
    return _reflect(first - pad, size), _reflect(second - pad, size), weight


def apply_jitter(x: torch.Tensor, max_pad: int, jitter: Jitter, view: int) -> torch.Tensor:
    """FeatUp's ``apply_jitter`` with the parameters of ``view``: reflect-pad ``max_pad``, bilinear zoom
    (if zoom > 1), crop rows x:x+H and columns y:y+W, flip the width axis. [B,C,H,W] -> same."""
    h, w = x.shape[-2:]
    zoom = float(jitter.zoom[view])
    rows = _jitter_axis(h, max_pad, int(jitter.x[view]), zoom, x.dtype, x.device)
    cols = _jitter_axis(w, max_pad, int(jitter.y[view]), zoom, x.dtype, x.device)
    return _gather(x, rows, cols, bool(jitter.flip[view]))


def _gather(x: torch.Tensor, rows, cols, flip: bool) -> torch.Tensor:
    """Bilinear gather of :func:`_jitter_axis` rows and columns of ``x`` [B,C,H,W], then the flip."""
    first = x.index_select(2, rows[0])
    x = first + (x.index_select(2, rows[1]) - first) * rows[2].view(-1, 1)
    first = x.index_select(3, cols[0])
    x = first + (x.index_select(3, cols[1]) - first) * cols[2]
    return x.flip(-1) if flip else x


class FourierFeatures(nn.Module):
    """Layer 1 (ImplicitFeaturizer, learned biases): [1,3,H,W] scaled image -> [1,start_dim,H,W].

    Inputs v = (gy, gx[, r, g, b]) with gy, gx = linspace(-1, 1) over rows / columns; frequencies
    exp(linspace(-2, 10, n_freqs)); channel k = n * M + m is sin(freq_n v_m + b0_k) (then cos with b1),
    b_i = ``biases[i].flatten()`` (the official reshape of a [M, n_freqs] tensor to [n_freqs, M])."""

    def __init__(self, n_freqs: int, color_feats: bool):
        super().__init__()
        self.n_freqs, self.color_feats = n_freqs, color_feats
        self.biases = nn.Parameter(torch.randn(2, 5 if color_feats else 2, n_freqs))

    def forward(self, scaled: torch.Tensor, rows: slice, height: int) -> torch.Tensor:
        """``scaled`` [1,3,r,W]: the rows ``rows`` of an image of ``height`` rows."""
        dtype, device = scaled.dtype, scaled.device
        _, _, r, w = scaled.shape
        gy = torch.linspace(-1, 1, height, dtype=dtype, device=device)[rows].view(r, 1).expand(r, w)
        gx = torch.linspace(-1, 1, w, dtype=dtype, device=device).view(1, w).expand(r, w)
        inputs = torch.stack([gy, gx])
        if self.color_feats:
            inputs = torch.cat([inputs, scaled[0]])
        freqs = torch.exp(torch.linspace(-2, 10, self.n_freqs, dtype=dtype, device=device)).view(-1, 1, 1, 1)
        args = (inputs.unsqueeze(0) * freqs).unsqueeze(0)  # [1, n_freqs, M, r, W]
        bias_shape = (1, self.n_freqs, inputs.shape[0], 1, 1)
        feats = [torch.sin(args + self.biases[0].reshape(bias_shape)).flatten(1, 2),
                 torch.cos(args + self.biases[1].reshape(bias_shape)).flatten(1, 2)]
        return torch.cat(feats + [scaled] if self.color_feats else feats, dim=1)


class ImplicitNet(nn.Sequential):
    """The per-pixel network U, in the official layer order (``upsampler.<i>``): 0 MinMaxScaler,
    1 Fourier features, 2 ChannelNorm, 3 Dropout2d, 4 conv 1x1 -> P, 5 ReLU, 6 Dropout2d,
    7 ChannelNorm, 8 conv 1x1, 9 ReLU, 10 conv 1x1. Layers 0, 3 and 6 hold no parameters and are
    applied in :meth:`forward` (the scaler from given statistics, the dropouts with given masks)."""

    def __init__(self, n_freqs: int, color_feats: bool, proj_dim: int):
        channels = start_dim(n_freqs, color_feats)
        super().__init__(nn.Identity(), FourierFeatures(n_freqs, color_feats), ChannelNorm(channels), nn.Identity(),
                         nn.Conv2d(channels, proj_dim, 1), nn.ReLU(), nn.Identity(), ChannelNorm(proj_dim),
                         nn.Conv2d(proj_dim, proj_dim, 1), nn.ReLU(), nn.Conv2d(proj_dim, proj_dim, 1))

    def forward(self, image: torch.Tensor, stats: Tuple[torch.Tensor, torch.Tensor], rows: slice = slice(None),
                keep: Optional[Tuple[torch.Tensor, torch.Tensor]] = None) -> torch.Tensor:
        """Rows ``rows`` of U(``image`` [1,3,H,W]) -> [1,P,r,W]. ``stats``: :func:`scaler_stats` of the
        whole image. ``keep``: the keep masks [1,start_dim,1,1] and [1,P,1,1] of the two dropouts (train
        mode); None: eval mode."""
        keep1, keep2 = (None, None) if keep is None else keep
        low, scale = stats
        x = self[1]((image[:, :, rows] - low) / scale - 0.5, rows, image.shape[2])
        x = self[5](self[4](channel_dropout(self[2](x), keep1)))
        x = self[9](self[8](self[7](channel_dropout(x, keep2))))
        return self[10](x)


class AttentionDownsampler(nn.Module):
    """The learned downsampler: attention pooling of k x k windows (stride (H - k) // (f - 1)) of the
    blurred map to an f x f grid. ``attention_net`` is the official Sequential(Dropout, Linear(dim, 1));
    its dropout is applied in :meth:`forward` with a given mask, so index 0 is a placeholder."""

    def __init__(self, dim: int, kernel_size: int, final_size: int):
        super().__init__()
        self.kernel_size, self.final_size = kernel_size, final_size
        self.attention_net = nn.Sequential(nn.Identity(), nn.Linear(dim, 1))
        self.w = nn.Parameter(torch.ones(kernel_size, kernel_size) + 0.01 * torch.randn(kernel_size, kernel_size))
        self.b = nn.Parameter(torch.zeros(kernel_size, kernel_size) + 0.01 * torch.randn(kernel_size, kernel_size))

    def stride(self, size: int) -> int:
        return (size - self.kernel_size) // (self.final_size - 1)

    def forward(self, blurred: torch.Tensor, patch_keep: Optional[torch.Tensor], logit_keep: torch.Tensor,
                rows: slice = slice(None), top: int = 0) -> torch.Tensor:
        """Output rows ``rows`` (of f) from the blurred map [1,C,H,W] -> [1,C,r,f]; ``blurred`` may hold
        only the map's rows from ``top`` on (at least those the windows of ``rows`` read).

        ``patch_keep`` [r,f,k*k,C] bool: dropout on the logit inputs only (None: eval); ``logit_keep``
        [r,f,1] bool multiplies the logits (official: applied in eval too)."""
        k, f = self.kernel_size, self.final_size
        stride = self.stride(blurred.shape[-1])
        first, stop, _ = rows.indices(f)
        band = blurred[:, :, first * stride - top:(stop - 1) * stride + k - top]
        channels = band.shape[1]
        patches = F.unfold(band, k, stride=stride).view(channels, k * k, stop - first, f).permute(2, 3, 1, 0)
        logits = self.attention_net[1](channel_dropout(patches, patch_keep)).squeeze(-1)  # [r, f, k*k]
        attention = torch.softmax(logits * logit_keep * self.w.flatten() + self.b.flatten(), dim=-1)
        return torch.einsum("hwpc,hwp->chw", patches, attention).unsqueeze(0)


def outlier_detector(proj_dim: int) -> nn.Conv2d:
    """The scale head: conv 1x1 P -> 1 with the default init scaled by 0.1 (weight and bias)."""
    conv = nn.Conv2d(proj_dim, 1, 1)
    with torch.no_grad():
        conv.weight.mul_(OUTLIER_INIT_FACTOR)
        conv.bias.mul_(OUTLIER_INIT_FACTOR)
    return conv


class FeatUpImplicitModel(nn.Module):
    """Everything fitted on one image: ``upsampler`` (U), ``downsampler``, ``outlier_detector``.
    Parameters are created in the official order (torch default inits; ``biases``, ``w``, ``b`` normal)."""

    def __init__(self, proj_dim: int = 128, n_freqs: int = 30, color_feats: bool = True, kernel_size: int = 29,
                 final_size: int = 16):
        super().__init__()
        self.upsampler = ImplicitNet(n_freqs, color_feats, proj_dim)
        self.downsampler = AttentionDownsampler(proj_dim + 1, kernel_size, final_size)
        self.outlier_detector = outlier_detector(proj_dim)

    def scales(self, target: torch.Tensor) -> torch.Tensor:
        """Per-cell scale s = max(exp(conv(target) + 0.1), 1e-4): [B,P,f,f] -> [B,1,f,f]."""
        return torch.exp(self.outlier_detector(target) + SCALE_OFFSET).clamp_min(SCALE_MIN)

    def evaluate(self, image: torch.Tensor, stats, chunk_size: int, keep=None) -> torch.Tensor:
        """U(``image`` [1,3,H,W]) -> [1,P,H,W] without autograd, in chunks of whole rows."""
        rows = _rows_per_chunk(chunk_size, image.shape[-1] * self.upsampler[2].norm.normalized_shape[0])
        with torch.no_grad():
            return torch.cat([self.upsampler(image, stats, slice(r, r + rows), keep)
                              for r in range(0, image.shape[2], rows)], dim=2)


def _rows_per_chunk(chunk_size: int, elements_per_row: int) -> int:
    return max(1, chunk_size // max(1, elements_per_row))


def _leaf(x: torch.Tensor) -> torch.Tensor:
    return x.detach().requires_grad_(True)


def view_terms_backward(model: FeatUpImplicitModel, hr: torch.Tensor, hr_mag: torch.Tensor, hr_grad: torch.Tensor,
                        mag_grad: torch.Tensor, target: torch.Tensor, jitter: Jitter, view: int, max_pad: int,
                        patch_keep: Optional[torch.Tensor], logit_keep: torch.Tensor, weights: Tuple[float, float],
                        chunk_size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """One jittered view's share of the reconstruction and magnitude terms, back-propagated.

    ``hr`` [1,P,H,W] and ``hr_mag`` [1,1,H,W] (no autograd) make FeatUp's ``hr_both`` (magnitude
    first), their gradient accumulators ``hr_grad`` and ``mag_grad`` (same shapes) are added to in
    place; ``target`` [1,P,f,f]; ``weights``: the factors (1 / (B*P*f*f), mag_weight / (B*f*f)) that
    turn this view's sums into its part of the loss. The view is made band by band of output rows:
    the blurred rows a band's windows read, from the jittered rows around them (reflect border), from
    the slab of ``hr_both`` rows those gather (only the slab is stacked, never the whole map).
    Returns this view's (sum of rec elements, sum of squared magnitude errors), detached."""
    down, (h, w) = model.downsampler, hr.shape[-2:]
    zoom, flip = float(jitter.zoom[view]), bool(jitter.flip[view])
    f, k, stride = down.final_size, down.kernel_size, down.stride(w)
    cols = _jitter_axis(w, max_pad, int(jitter.y[view]), zoom, hr.dtype, hr.device)
    band_rows = _rows_per_chunk(chunk_size, f * k ** 2 * (hr.shape[1] + 1))
    rec_sum = mag_sum = 0
    for first in range(0, f, band_rows):
        rows = slice(first, min(f, first + band_rows))
        top, bottom = first * stride, (rows.stop - 1) * stride + k
        positions = _reflect(torch.arange(top - 2, bottom + 2, device=hr.device), h)
        src = _jitter_axis(h, max_pad, int(jitter.x[view]), zoom, hr.dtype, hr.device, positions)
        low, high = int(torch.minimum(src[0], src[1]).min()), int(torch.maximum(src[0], src[1]).max()) + 1
        slab = _leaf(torch.cat([hr_mag[:, :, low:high], hr[:, :, low:high]], dim=1))
        blurred = _blur_rows(_blur_columns(_gather(slab, (src[0] - low, src[1] - low, src[2]), cols, flip)))
        out = down(blurred, None if patch_keep is None else patch_keep[rows], logit_keep[rows], rows, top)
        part = target[:, :, rows]
        scales = model.scales(part)
        rec = ((1 / (2 * scales ** 2)) * (out[:, 1:] - part).square() + scales.log()).sum()
        mag = (out[:, :1] - magnitude(part)).square().sum()
        (rec * weights[0] + mag * weights[1]).backward()
        mag_grad[:, :, low:high] += slab.grad[:, :1]
        hr_grad[:, :, low:high] += slab.grad[:, 1:]
        rec_sum, mag_sum = rec_sum + rec.detach(), mag_sum + mag.detach()
    return rec_sum, mag_sum


def step_backward(model: FeatUpImplicitModel, image: torch.Tensor, stats, targets: torch.Tensor, jitter: Jitter,
                  views: Sequence[int], keep: Tuple[torch.Tensor, torch.Tensor],
                  view_keeps: Callable[[int], Tuple[Optional[torch.Tensor], torch.Tensor]], max_pad: int,
                  loss_weights: Tuple[float, float, float], chunk_size: int) -> Terms:
    """The loss of one optimisation step, with its gradients accumulated into ``model``'s ``.grad``.

    ``image`` [1,3,H,W]; ``targets`` [B,P,f,f] for the jitter ``views`` (indices into ``jitter``);
    ``keep``: U's two dropout masks; ``view_keeps(j)`` -> (patch keep [f,f,k*k,P+1], logit keep [f,f,1])
    of batch element j; ``loss_weights``: (mag_weight, mag_tv_weight, blur_pin).
    loss = rec + mag_weight * mag + mag_tv_weight * tv(|hr|) + blur_pin * mean((blur5(hr) - hr)^2)."""
    mag_weight, tv_weight, pin_weight = loss_weights
    hr = model.evaluate(image, stats, chunk_size, keep)
    hr_mag = _leaf(magnitude(hr))
    # d loss / d hr and d |hr|, completed in place; row-major like the official [1,P+1,H,W] stack (hr itself
    # is channels-last): the layout sets the upsampler backward's kernels, hence its rounding
    grad = torch.zeros(hr.shape, dtype=hr.dtype, device=hr.device)
    mag_grad = torch.zeros_like(hr_mag)
    batch, channels, f = targets.shape[0], targets.shape[1], targets.shape[-1]
    per_view = (1 / (batch * channels * f * f), mag_weight / (batch * f * f))
    rec = mag = 0
    for j, view in enumerate(views):
        sums = view_terms_backward(model, hr, hr_mag.detach(), grad, mag_grad, targets[j:j + 1], jitter, view,
                                   max_pad, *view_keeps(j), per_view, chunk_size)
        rec, mag = rec + sums[0], mag + sums[1]
    tv = total_variation(hr_mag)
    (tv_weight * tv).backward()
    mag_grad += hr_mag.grad
    rows, numel = _rows_per_chunk(chunk_size, hr.shape[1] * hr.shape[-1]), hr.numel()
    blur_pin = 0
    for first in range(0, hr.shape[2], rows):
        blur_pin = blur_pin + _pin_and_magnitude_backward(hr, slice(first, first + rows), mag_grad,
                                                          pin_weight / numel, grad)
    blur_pin = blur_pin / numel
    del hr, hr_mag, mag_grad  # U is re-evaluated chunk by chunk below: only ``grad`` stays
    _upsampler_backward(model, image, stats, keep, grad, chunk_size)
    rec, mag = rec * per_view[0], mag / (batch * f * f)
    loss = rec + mag_weight * mag + tv_weight * tv.detach() + pin_weight * blur_pin.detach()
    return Terms(rec, mag, tv.detach(), blur_pin.detach(), loss)


def _pin_and_magnitude_backward(hr: torch.Tensor, rows: slice, mag_grad: torch.Tensor, pin_factor: float,
                                grad: torch.Tensor) -> torch.Tensor:
    """Rows ``rows`` of the blur-pin sum ((blur5(hr) - hr)^2 summed) and of |hr|: back-propagates
    ``pin_factor`` x that sum and ``mag_grad`` [1,1,H,W] (d loss / d |hr|) into ``grad`` [1,P,H,W]
    (added in place). Reads the slab of ``hr`` rows that the blur's reflect border needs."""
    h = hr.shape[2]
    first, stop, _ = rows.indices(h)
    positions = _reflect(torch.arange(first - 2, stop + 2, device=hr.device), h)
    low, high = int(positions.min()), int(positions.max()) + 1
    slab = _leaf(hr[:, :, low:high])
    centre = slab[:, :, first - low:stop - low]
    pin = (_blur_rows(_blur_columns(slab.index_select(2, positions - low))) - centre).square().sum()
    torch.autograd.backward([pin * pin_factor, magnitude(centre)], [None, mag_grad[:, :, first:stop]])
    grad[:, :, low:high] += slab.grad
    return pin.detach()


def _upsampler_backward(model: FeatUpImplicitModel, image, stats, keep, grad: torch.Tensor, chunk_size: int) -> None:
    """Re-evaluate U chunk by chunk with autograd and back-propagate ``grad`` [1,P,H,W] (d loss / d U(image))."""
    rows = _rows_per_chunk(chunk_size, image.shape[-1] * model.upsampler[2].norm.normalized_shape[0])
    for first in range(0, image.shape[2], rows):
        part = slice(first, first + rows)
        model.upsampler(image, stats, part, keep).backward(grad[:, :, part])


def unproject(hr: torch.Tensor, components: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """PCA unprojection r @ components + mean per pixel: [B,P,H,W] -> [B,D,H,W]."""
    return (hr.movedim(1, -1) @ components).add_(mean).movedim(-1, 1)  # in place: no second [B,H,W,D] buffer


def project(feats: torch.Tensor, components: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """PCA projection (x - mean) @ components.T per pixel: [B,D,h,w] -> [B,P,h,w]."""
    return ((feats.movedim(1, -1) - mean) @ components.T).movedim(-1, 1)


def fit_pca(feats: torch.Tensor, dim: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """PCA of the pixels of ``feats`` [N,D,h,w]: (components [dim,D], mean [D]). The official code uses
    ``torch.pca_lowrank`` (randomised, niter 4); this is the exact SVD it approximates. dim == D:
    the identity (official: no projection)."""
    pixels = feats.movedim(1, -1).reshape(-1, feats.shape[1])
    mean = pixels.mean(dim=0)
    if dim == feats.shape[1]:
        return torch.eye(dim, dtype=feats.dtype, device=feats.device), torch.zeros_like(mean)
    return torch.linalg.svd(pixels - mean, full_matrices=False).Vh[:dim], mean
