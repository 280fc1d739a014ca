"""The JBU adaptive convolution (tap by tap) against the unfold formula, forward and backward."""
import pytest
import torch
import torch.nn.functional as F

from anyup_dense.ops.jbu import (adaptive_conv, adaptive_conv_unfold, normalize_kernel, range_kernel,
                                 spatial_kernel, taps_to_pixel_kernels)


def _inputs(b=2, c=5, h=6, w=9, d=7, dtype=torch.float64, requires_grad=False):
    source = torch.randn(b, c, h + d - 1, w + d - 1, dtype=dtype, requires_grad=requires_grad)
    kernels = torch.randn(b, h, w, d, d, dtype=dtype, requires_grad=requires_grad)
    return source, kernels


@pytest.mark.parametrize("d", [1, 3, 7])
def test_forward_matches_unfold(d):
    source, kernels = _inputs(d=d)
    out = adaptive_conv(source, kernels)
    ref = adaptive_conv_unfold(source, kernels)
    assert out.shape == (2, 5, 6, 9)
    assert (out - ref).abs().max() <= 1e-12 * ref.abs().max()


def test_forward_matches_explicit_sum():
    """The definition, written out for one output element: a correlation, no kernel flip."""
    source, kernels = _inputs(b=1, c=2, h=3, w=4)
    out = adaptive_conv(source, kernels)
    b, c, y, x = 0, 1, 2, 3
    expected = sum(kernels[b, y, x, i, j] * source[b, c, y + i, x + j] for i in range(7) for j in range(7))
    assert torch.allclose(out[b, c, y, x], expected, rtol=1e-13, atol=0)


def test_gradients_match_unfold_autograd_for_all_49_taps():
    source, kernels = _inputs(requires_grad=True)
    grad_out = torch.randn(2, 5, 6, 9, dtype=torch.float64)
    grads = torch.autograd.grad(adaptive_conv(source, kernels), (source, kernels), grad_out)
    ref_grads = torch.autograd.grad(adaptive_conv_unfold(source, kernels), (source, kernels), grad_out)
    for ours, ref in zip(grads, ref_grads):
        assert (ours - ref).abs().max() <= 1e-6 * ref.abs().max()
    grad_kernels = grads[1]
    per_tap = grad_kernels.abs().amax(dim=(0, 1, 2))  # [7, 7]
    assert (per_tap > 0).all(), "every tap must receive a gradient (upstream CUDA fills only 7)"
    # Relative check per tap, so a tap with a small gradient cannot hide behind a large one.
    per_tap_err = (grad_kernels - ref_grads[1]).abs().amax(dim=(0, 1, 2))
    assert (per_tap_err <= 1e-6 * per_tap).all()


def test_gradcheck():
    source, kernels = _inputs(b=1, c=2, h=2, w=3, d=3, requires_grad=True)
    assert torch.autograd.gradcheck(adaptive_conv, (source, kernels))


def test_shape_and_dtype_errors():
    source, kernels = _inputs()
    with pytest.raises(ValueError, match=r"padded by 3"):
        adaptive_conv(source[..., 1:], kernels)
    with pytest.raises(ValueError, match=r"kernels \[B,H,W,d,d\]"):
        adaptive_conv(source, kernels[..., :5])
    with pytest.raises(ValueError, match="dtype mismatch"):
        adaptive_conv(source.float(), kernels)


def test_range_kernel_matches_unfold_formula():
    keys = torch.randn(2, 4, 5, 6, dtype=torch.float64)
    temp = torch.tensor(0.7, dtype=torch.float64)
    ours = range_kernel(keys, temp, radius=3)
    neighbours = F.unfold(F.pad(keys, [3] * 4, mode="reflect"), 7).view(2, 4, 49, 5, 6)
    logits = torch.einsum("bcphw,bchw->bphw", neighbours, keys)
    ref = torch.softmax(temp.exp() * logits, dim=1)
    assert torch.allclose(ours, ref, rtol=1e-12, atol=1e-15)
    assert torch.allclose(ours.sum(1), torch.ones(2, 5, 6, dtype=torch.float64))


def test_range_temperature_is_clamped():
    keys = torch.randn(1, 4, 5, 5, dtype=torch.float64)
    at_limit = range_kernel(keys, torch.tensor(9.2103, dtype=torch.float64), 1)  # exp = 1e4 (limit)
    beyond = range_kernel(keys, torch.tensor(50.0, dtype=torch.float64), 1)
    assert torch.allclose(at_limit, beyond, rtol=1e-4)


def test_spatial_kernel_and_normalisation():
    sigma = torch.tensor(0.5, dtype=torch.float64)
    s = spatial_kernel(sigma, 3).view(7, 7)
    assert s.dtype == torch.float64 and s[3, 3] == 1.0
    assert torch.allclose(s[0, 0], torch.exp(torch.tensor(-2.0 / (2 * 0.25), dtype=torch.float64)))
    assert torch.allclose(s, s.T) and torch.allclose(s, s.flip(0))
    kernel = torch.rand(1, 49, 2, 3, dtype=torch.float64)
    assert torch.allclose(normalize_kernel(kernel).sum(1), torch.ones(1, 2, 3, dtype=torch.float64))
    assert normalize_kernel(torch.zeros(1, 49, 1, 1)).abs().max() == 0  # clamped denominator, no NaN


def test_taps_to_pixel_kernels_layout():
    kernel = torch.arange(2 * 49 * 3 * 4, dtype=torch.float64).view(2, 49, 3, 4)
    pixel = taps_to_pixel_kernels(kernel)
    assert pixel.shape == (2, 3, 4, 7, 7)
    assert pixel[1, 2, 3, 4, 5] == kernel[1, 7 * 4 + 5, 2, 3]
