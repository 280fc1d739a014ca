"""Training losses of the three recipes.

* :func:`cosine_mse` (AnyUp's ``Cosine_MSE``): :func:`cosine_term` + :func:`minmax_mse_term`.
* :func:`scaled_reconstruction_nll` (FeatUp): Gaussian NLL with a learned per-pixel scale.
* :func:`uncertainty_weighted_mse` (FeatSharp): MSE weighted by exp(-v) plus v / 2.
* :func:`sampled_crf` (FeatUp, weight 0.001): a bilateral smoothness penalty on random
  pixel pairs.
"""
import torch
import torch.nn.functional as F

MINMAX_EPS = 1e-6


def _pixels(x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B*H*W, C]."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def cosine_term(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over pixels of 1 - cos(pred_i, target_i); inputs [B, C, H, W]."""
    return (1 - F.cosine_similarity(_pixels(pred), _pixels(target), dim=1, eps=1e-8)).mean()


def minmax_mse_term(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE after normalising both by the target's per-pixel channel range:
    (x - min_c target) / (max_c target - min_c target + 1e-6); inputs [B, C, H, W]."""
    p, t = _pixels(pred), _pixels(target)
    low = t.min(dim=1, keepdim=True).values
    span = t.max(dim=1, keepdim=True).values - low + MINMAX_EPS
    return F.mse_loss((p - low) / span, (t - low) / span)


def cosine_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """AnyUp's loss: cosine term + min-max normalised MSE term (weights 1 and 1)."""
    return cosine_term(pred, target) + minmax_mse_term(pred, target)


def random_projection(batch: int, channels: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    """[B, C, dim] Gaussian matrices with L2-normalised columns (FeatUp's loss projection)."""
    return F.normalize(torch.randn(batch, channels, dim, generator=generator), dim=1)


def project(x: torch.Tensor, projection: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] x [B, C, K] -> [B, K, H, W]."""
    return torch.einsum("bchw,bck->bkhw", x, projection.to(x))


def scaled_reconstruction_nll(pred: torch.Tensor, target: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """mean((pred - target)^2 / (2 s^2) + log s); pred/target [B, K, h, w], s [B, 1, h, w] > 0."""
    return ((pred - target).square() / (2 * scale.square()) + scale.log()).mean()


def uncertainty_weighted_mse(pred: torch.Tensor, target: torch.Tensor, log_var: torch.Tensor,
                             weight: torch.Tensor) -> torch.Tensor:
    """FeatSharp's per-view reconstruction term.

    err = mean_c (pred - target)^2 per pixel; returns
    sum(weight * (err * exp(-v) + v / 2)) / max(sum(weight), numel / 2), with pred/target
    [B, D, h, w], log_var v and weight [B, 1, h, w].
    """
    err = (pred - target).square().mean(1, keepdim=True)
    per_pixel = err * torch.exp(-log_var) + log_var / 2
    denominator = torch.clamp(weight.sum(), min=weight.numel() / 2)
    return (weight * per_pixel).sum() / denominator


def sampled_crf(features: torch.Tensor, image: torch.Tensor, generator: torch.Generator, samples: int = 1000,
                w_bilateral: float = 10.0, w_spatial: float = 3.0, var_xy: float = 0.1, var_rgb: float = 0.15,
                var_xy_spatial: float = 0.005) -> torch.Tensor:
    """Mean over all pairs of ``samples`` random pixels of k_ij * ||f_i - f_j||^2 with
    k_ij = w_b exp(-|dxy|^2 / (2 var_xy) - |dI|^2 / (2 var_rgb)) + w_s exp(-|dxy|^2 / (2 var_xy_spatial)).

    features [B, K, H, W], image [B, 3, H, W] (same H, W); coordinates in [0, 1].
    """
    height, width = features.shape[-2:]
    ys = torch.randint(0, height, (samples,), generator=generator).to(features.device)
    xs = torch.randint(0, width, (samples,), generator=generator).to(features.device)
    coords = torch.stack([ys / max(height - 1, 1), xs / max(width - 1, 1)], 1).to(features.dtype)
    d_xy = torch.cdist(coords, coords).square()
    colours = image[:, :, ys, xs].transpose(1, 2)
    d_rgb = torch.cdist(colours, colours).square()
    kernel = (w_bilateral * torch.exp(-d_xy / (2 * var_xy) - d_rgb / (2 * var_rgb))
              + w_spatial * torch.exp(-d_xy / (2 * var_xy_spatial)))
    picked = features[:, :, ys, xs].transpose(1, 2)
    d_feat = torch.cdist(picked, picked).square()
    return (kernel * d_feat).mean()
