"""Window attention as users call it: mixed dtypes under autocast, evaluation loops
(no_grad / inference_mode), second derivatives, and bad arguments."""
import numpy as np
import pytest
import torch

from anyup_dense.ops.jbu import adaptive_conv
from anyup_dense.ops.window_attention import window_attention_reference
from anyup_dense.ops.window_attention_triton import window_attention_triton
from anyup_dense.upsamplers.attention_backend import triton_self_test, window_attention

# (B, heads, Ho, Wo, h, w, d, C): non-square, windows truncated at every border
SHAPE = (1, 2, 12, 9, 5, 4, 8, 3)


def _qkv(dtype=torch.float32):
    b, nh, ho, wo, h, w, d, c = SHAPE
    gen = torch.Generator().manual_seed(0)
    return (2 * torch.randn(b, nh, ho, wo, d, generator=gen, dtype=dtype),
            2 * torch.randn(b, nh, h, w, d, generator=gen, dtype=dtype),
            torch.randn(b, c, h, w, generator=gen, dtype=dtype))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "triton", "reference"])
@pytest.mark.parametrize("low", [torch.bfloat16, torch.float16])
def test_mixed_dtypes_run_forward_and_backward(backend, low):
    """q/k in bf16/fp16 with float32 values (what autocast hands over): output in the low
    dtype, gradients in each input's dtype, close to the float64 reference computed on the
    same rounded q/k."""
    q, k, v = _qkv()
    q, k = q.to(low).requires_grad_(), k.to(low).requires_grad_()
    v.requires_grad_()
    out = window_attention(q, k, v, 0.1, backend=backend)
    assert out.dtype == low
    grads = torch.autograd.grad(out.float().square().sum(), (q, k, v))
    assert [g.dtype for g in grads] == [low, low, torch.float32]
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    ref = window_attention_reference(q64, k64, v64, 0.1)
    ref_grads = torch.autograd.grad(ref.square().sum(), (q64, k64, v64))
    # bf16 has an 8-bit mantissa (2^-8 = 3.9e-3 relative rounding), fp16 11 bits; values,
    # probabilities and gradients are each rounded once or twice. Measured worst over the
    # three backends: 1.7e-2 (bf16, dq/dk), 2.4e-3 (fp16); bounds about 1.7x.
    tol = 3e-2 if low == torch.bfloat16 else 4e-3
    for ours, expected in zip((out, *grads), (ref, *ref_grads)):
        err = ((ours.double() - expected).abs().max() / expected.abs().max()).item()
        assert err < tol, err


@pytest.mark.slow
@pytest.mark.parametrize("context", ["no_grad", "inference_mode", "autocast"])
def test_triton_self_test_passes_in_any_caller_mode(context, recwarn):
    """The one-time self-test is independent of the caller's grad mode and autocast (it used
    to fail under no_grad and disable Triton for every evaluation)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    modes = {"no_grad": torch.no_grad(), "inference_mode": torch.inference_mode(),
             "autocast": torch.autocast(device.type, dtype=torch.bfloat16)}
    with modes[context]:
        assert triton_self_test(device) is True
    assert not [w for w in recwarn if "Triton" in str(w.message)]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_second_derivative_raises(backend):
    q, k, v = (t.requires_grad_() for t in _qkv())
    out = window_attention(q, k, v, 0.1, backend=backend)
    (dq,) = torch.autograd.grad(out.square().sum(), q, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        dq.sum().backward()


def test_reference_second_derivative_works():
    """The dense reference stays twice differentiable (for gradient penalties in tests)."""
    q, k, v = (t.double().requires_grad_() for t in _qkv())
    out = window_attention_reference(q, k, v, 0.1)
    (dq,) = torch.autograd.grad(out.square().sum(), q, create_graph=True)
    (ddv,) = torch.autograd.grad(dq.square().sum(), v)
    assert ddv.abs().max() > 0


def test_adaptive_conv_second_derivative_raises():
    source = torch.randn(1, 2, 6, 6, requires_grad=True)
    kernels = torch.randn(1, 4, 4, 3, 3, requires_grad=True)
    (d_source,) = torch.autograd.grad(adaptive_conv(source, kernels).square().sum(), source, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        d_source.sum().backward()


@pytest.mark.parametrize("backend", ["torch", "triton", "reference"])
@pytest.mark.parametrize("ratio", [-0.1, float("nan"), float("inf"), "0.1", True, None])
def test_bad_window_ratio_is_refused_by_every_backend(backend, ratio):
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="window_ratio must be a finite number >= 0"):
        window_attention(q, k, v, ratio, backend=backend)


def test_numpy_ratio_and_chunk_sizes_are_accepted():
    q, k, v = _qkv()
    expected = window_attention(q, k, v, 0.1, backend="torch")
    out = window_attention(q, k, v, np.float32(0.1), backend="torch", max_pixels_per_chunk=np.int64(7))
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-7)
    out = window_attention(q, k, v, 0.1, backend="torch", max_pixels_per_chunk=torch.tensor(7))
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("chunk", [7.5, 0, -3, True, "64"])
def test_bad_chunk_size_is_refused(chunk):
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="max_pixels_per_chunk must be None or a positive integer"):
        window_attention(q, k, v, 0.1, backend="torch", max_pixels_per_chunk=chunk)


@pytest.mark.parametrize("backend", ["torch", "triton", "reference"])
def test_integer_and_empty_inputs_are_refused(backend):
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="v must be a floating-point tensor, got dtype torch.int64"):
        window_attention(q, k, v.long(), 0.1, backend=backend)
    with pytest.raises(ValueError, match=r"v must not be empty, got shape \(1, 0, 5, 4\)"):
        window_attention(q, k, v[:, :0], 0.1, backend=backend)


def test_triton_entry_point_checks_dtypes_directly():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="q, k, v must share one dtype"):
        window_attention_triton(q.half(), k.half(), v, 0.1)


def test_anyup_checks_its_attention_arguments_when_built():
    from anyup_dense.upsamplers.anyup import AnyUp

    with pytest.raises(ValueError, match="window_ratio must be a finite number >= 0"):
        AnyUp(qk_dim=16, window_ratio=-0.1)
    with pytest.raises(ValueError, match="max_pixels_per_chunk must be None or a positive integer, got 7.5"):
        AnyUp(qk_dim=16, max_pixels_per_chunk=7.5)
