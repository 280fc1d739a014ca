"""Joint bilateral upsampling (JBU) kernels as pure tensor functions.

A JBU level predicts one d x d kernel per output pixel (d = 2r + 1, P = d*d taps) and applies
it, shared across channels, to the resized and reflect-padded low-resolution features. Tap
``p = d*i + j`` (``i`` the row offset index, ``j`` the column offset index, both in 0..d-1)
looks at the neighbour at spatial offset ``(i - r, j - r)``.

Kernels are built in two layouts:
  * tap-major ``[B, P, H, W]`` (what the kernel MLPs consume and produce), and
  * pixel-major ``[B, H, W, d, d]`` (the adaptive-conv layout; :func:`taps_to_pixel_kernels`).

Everything here is computed tap by tap: no tensor of size ``P x C x H x W`` (or ``P x K x H x W``
for the range keys) is ever materialised, so memory stays O(C*H*W). :func:`adaptive_conv_unfold`
is the textbook unfold formula, kept only as the reference for tests and benchmarks.
"""
import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

KERNEL_NORM_EPS = 1e-7
TEMPERATURE_MIN, TEMPERATURE_MAX = 1e-4, 1e4


def _check_conv_shapes(source: torch.Tensor, kernels: torch.Tensor) -> int:
    """Validate ``source`` [B,C,H+d-1,W+d-1] against ``kernels`` [B,H,W,d,d]; return d."""
    if source.dim() != 4 or kernels.dim() != 5 or kernels.shape[-1] != kernels.shape[-2]:
        raise ValueError(f"expected source [B,C,H+d-1,W+d-1] and kernels [B,H,W,d,d], got "
                         f"{tuple(source.shape)} and {tuple(kernels.shape)}")
    b, h, w, d, _ = kernels.shape
    if source.shape[0] != b or source.shape[2] != h + d - 1 or source.shape[3] != w + d - 1:
        raise ValueError(f"source {tuple(source.shape)} must be [{b}, C, {h + d - 1}, {w + d - 1}] "
                         f"(padded by {d // 2}) for kernels {tuple(kernels.shape)}")
    if source.dtype != kernels.dtype:
        raise ValueError(f"dtype mismatch: source is {source.dtype}, kernels are {kernels.dtype}")
    return d


class _AdaptiveConv(torch.autograd.Function):
    """Tap-by-tap forward and backward of :func:`adaptive_conv`. The backward accumulates each
    tap's contribution in place, so it needs no per-tap full-size buffers:
    d_source[:, :, y+i, x+j] += kernels[y, x, i, j] * d_out[y, x] and
    d_kernels[y, x, i, j] = sum_c d_out[c, y, x] * source[c, y+i, x+j]."""

    @staticmethod
    def forward(ctx, source: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
        d = kernels.shape[-1]
        b, h, w = kernels.shape[:3]
        # Tap-major and contiguous, so each tap is one dense [B, 1, H, W] plane (about 2.5x faster on CPU).
        taps = kernels.permute(0, 3, 4, 1, 2).contiguous().unsqueeze(3)  # [B, d, d, 1, H, W]
        out = source.new_zeros(b, source.shape[1], h, w)
        for i in range(d):
            for j in range(d):
                out.addcmul_(taps[:, i, j], source[:, :, i:i + h, j:j + w])
        ctx.save_for_backward(source, taps)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        source, taps = ctx.saved_tensors
        d = taps.shape[1]
        h, w = grad_out.shape[-2:]
        grad_source = grad_taps = None
        if ctx.needs_input_grad[0]:
            grad_source = torch.zeros_like(source)
            for i in range(d):
                for j in range(d):
                    grad_source[:, :, i:i + h, j:j + w].addcmul_(taps[:, i, j], grad_out)
        if ctx.needs_input_grad[1]:
            grad_taps = torch.stack([(grad_out * source[:, :, i:i + h, j:j + w]).sum(1)
                                     for i in range(d) for j in range(d)], dim=-1)  # [B, H, W, d*d]
            grad_taps = grad_taps.view(*grad_taps.shape[:3], d, d)
        return grad_source, grad_taps


def adaptive_conv(source: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Per-pixel, channel-shared correlation, computed tap by tap.

    ``out[b,c,y,x] = sum_{i,j} kernels[b,y,x,i,j] * source[b,c,y+i,x+j]``

    Args:
        source: [B, C, H+d-1, W+d-1], already padded (no padding happens here).
        kernels: [B, H, W, d, d], one kernel per output pixel.
    Returns:
        [B, C, H, W].

    d*d shifted multiply-accumulates in i-major, j-minor order (the summation order of FeatUp's
    CUDA kernel). Peak extra memory is one [B, C, H, W] accumulator, in the forward and in the
    backward, which gives exact gradients for the source and for every tap. Once
    differentiable: a second derivative (``create_graph=True``) raises a clear error.
    """
    _check_conv_shapes(source, kernels)
    return _AdaptiveConv.apply(source, kernels)


def adaptive_conv_unfold(source: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """The unfold formulation of :func:`adaptive_conv` (same shapes and result).

    Materialises ``F.unfold(source)`` = [B, C*d*d, H*W]: d*d times the memory of the output.
    Reference for tests and benchmarks only.
    """
    d = _check_conv_shapes(source, kernels)
    b, h, w = kernels.shape[:3]
    patches = F.unfold(source, d).view(b, source.shape[1], d * d, h, w)
    return torch.einsum("bcphw,bhwp->bchw", patches, kernels.reshape(b, h, w, d * d))


def range_kernel(keys: torch.Tensor, range_temp: torch.Tensor, radius: int) -> torch.Tensor:
    """Range (similarity) kernel of a learned-range JBU, tap by tap.

    ``R_p(y,x) = softmax_p(t * <keys(y,x), reflect_pad(keys)(y+i, x+j)>)`` with
    ``t = clamp(exp(range_temp), 1e-4, 1e4)`` and a plain dot product over the key channels.

    Args:
        keys: [B, K, H, W] projected guidance (H, W > radius for the reflect pad).
        range_temp: scalar tensor, the log temperature.
        radius: r; the kernel has (2r+1)^2 taps.
    Returns:
        [B, P, H, W], tap-major, summing to 1 over P.
    """
    h, w = keys.shape[-2:]
    d = 2 * radius + 1
    padded = F.pad(keys, [radius] * 4, mode="reflect")
    logits = torch.stack([(keys * padded[:, :, i:i + h, j:j + w]).sum(1)
                          for i in range(d) for j in range(d)], dim=1)
    temperature = range_temp.exp().clamp(TEMPERATURE_MIN, TEMPERATURE_MAX)
    return torch.softmax(temperature * logits, dim=1)


def spatial_kernel(sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """Gaussian spatial kernel on the grid ``linspace(-1, 1, 2r+1)``: [P, 1, 1], in sigma's dtype.

    ``S_p = exp(-(u_i^2 + u_j^2) / (2 sigma^2))``; not normalised by itself. The grid uses the
    dtype of ``sigma`` (the model's dtype), which for a float64 model is what the official code
    gives under a float64 default dtype.
    """
    d = 2 * radius + 1
    grid = torch.linspace(-1, 1, d, dtype=sigma.dtype, device=sigma.device)
    rows, cols = torch.meshgrid(grid, grid, indexing="ij")
    squared_distance = torch.stack([rows, cols]).square().sum(0)  # [d, d]
    return torch.exp(-squared_distance / (2 * sigma ** 2)).reshape(d * d, 1, 1)


def normalize_kernel(kernel: torch.Tensor) -> torch.Tensor:
    """Divide a tap-major kernel [B, P, H, W] by its tap sum, clamped below at 1e-7."""
    return kernel / kernel.sum(1, keepdim=True).clamp(min=KERNEL_NORM_EPS)


def taps_to_pixel_kernels(kernel: torch.Tensor) -> torch.Tensor:
    """Tap-major [B, P, H, W] -> pixel-major [B, H, W, d, d] (the :func:`adaptive_conv` layout)."""
    b, p, h, w = kernel.shape
    d = int(round(p ** 0.5))
    return kernel.permute(0, 2, 3, 1).reshape(b, h, w, d, d)


def apply_jbu_kernel(source: torch.Tensor, kernels: torch.Tensor, mode: str) -> torch.Tensor:
    """Resize low-res features [B, C, h, w] to the kernels' grid (``mode`` interpolation,
    align_corners=False), reflect-pad by r and apply kernels [B, H, W, d, d] -> [B, C, H, W].

    The resized map is a temporary of the padding call, so at most one full-size copy of
    the source (the padded one) is alive during the convolution."""
    radius = kernels.shape[-1] // 2
    resized_size = tuple(kernels.shape[1:3])
    padded = F.pad(F.interpolate(source, size=resized_size, mode=mode, align_corners=False), [radius] * 4,
                   mode="reflect")
    return adaptive_conv(padded, kernels)
