"""The Triton kernels (forward and backward) against the dense reference.

On a machine without CUDA they run under ``TRITON_INTERPRET=1`` (set in conftest.py), which
costs about a millisecond per program instance, so the grids here are tiny: 8x8-pixel tiles,
at most a few tiles, one or two heads.
"""
import pytest
import torch

from anyup_dense.ops import window_attention_triton as triton_module
from anyup_dense.ops.window_attention import window_attention_reference
from anyup_dense.ops.window_attention_triton import window_attention_triton
from anyup_dense.upsamplers import attention_backend
from anyup_dense.upsamplers.attention_backend import triton_available, triton_self_test, window_attention

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

# (B, heads, Ho, Wo, h, w, d, C, ratio)
CASES = [
    (1, 2, 12, 9, 5, 4, 8, 3, 0.1),      # non-square, 2x2 tiles, windows truncated at all four borders
    (2, 1, 9, 10, 4, 6, 4, 17, 0.25),    # batch 2, C not a multiple of the channel block
    (1, 1, 5, 6, 3, 3, 4, 1, 0.0),       # ratio 0 (full attention), C = 1, a single partial tile
    (1, 2, 4, 3, 7, 6, 16, 5, 0.3),      # output smaller than the key grid
]


def _inputs(b, nh, ho, wo, h, w, d, c, dtype=torch.float32):
    q = 2 * torch.randn(b, nh, ho, wo, d, dtype=torch.float64)
    k = 2 * torch.randn(b, nh, h, w, d, dtype=torch.float64)
    v = torch.randn(b, c, h, w, dtype=torch.float64)
    return [t.to(DEVICE, dtype).requires_grad_() for t in (q, k, v)]


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().double() - b.detach().double()).abs().max() / b.detach().double().abs().max())


def _reference_with_grads(q, k, v, ratio, grad_out):
    """float64 reference output and gradients for the same (upcast) inputs."""
    q64, k64, v64 = [t.detach().double().requires_grad_() for t in (q, k, v)]
    out = window_attention_reference(q64, k64, v64, ratio)
    return out, torch.autograd.grad(out, (q64, k64, v64), grad_out.double())


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c)))
def test_forward_and_gradients_match_reference(case):
    q, k, v = _inputs(*case[:-1])
    ratio = case[-1]
    out = window_attention_triton(q, k, v, ratio)
    assert out.shape == (case[0], case[7], case[2], case[3]) and out.dtype == torch.float32
    grad_out = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v), grad_out)
    expected, expected_grads = _reference_with_grads(q, k, v, ratio, grad_out)
    assert _rel_err(out, expected) < 1e-5
    for name, got, want in zip("qkv", grads, expected_grads):
        assert got.dtype == torch.float32
        assert _rel_err(got, want) < 1e-4, name


@pytest.mark.parametrize("dtype,tol", [(torch.float16, 5e-3), (torch.bfloat16, 3e-2)])
def test_low_precision_inputs(dtype, tol):
    q, k, v = _inputs(1, 2, 9, 8, 4, 4, 16, 5, dtype=dtype)
    out = window_attention_triton(q, k, v, 0.2)
    assert out.dtype == dtype
    grad_out = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v), grad_out)
    expected, expected_grads = _reference_with_grads(q, k, v, 0.2, grad_out)
    assert _rel_err(out, expected) < tol
    for got, want in zip(grads, expected_grads):
        assert got.dtype == dtype and _rel_err(got, want) < 4 * tol


def test_value_gradient_alone_and_dispatch():
    """backend="triton" reaches the kernel; with only v requiring grad, dv is still exact."""
    q, k, v = _inputs(1, 1, 8, 8, 4, 4, 4, 2)
    q, k = q.detach(), k.detach()
    out = window_attention(q, k, v, 0.1, backend="triton")
    grad_out = torch.randn_like(out)
    (dv,) = torch.autograd.grad(out, (v,), grad_out)
    expected, expected_grads = _reference_with_grads(q, k, v, 0.1, grad_out)
    assert _rel_err(out, expected) < 1e-5 and _rel_err(dv, expected_grads[2]) < 1e-4


def test_rejects_mixed_dtypes():
    q, k, v = _inputs(1, 1, 4, 4, 2, 2, 4, 1)
    with pytest.raises(ValueError, match="dtype"):
        window_attention_triton(q, k, v.detach().double(), 0.1)


@pytest.mark.slow
def test_self_test_passes_on_the_real_kernels():
    assert triton_self_test(torch.device("cpu"))  # the interpreter stands in for a GPU here


def test_auto_never_picks_triton_off_cuda():
    assert not triton_available(torch.device("cpu"))


def test_self_test_runs_once_per_device_until_reset(monkeypatch):
    """``triton_available`` caches each CUDA device's self-test result; ``reset_triton_checks``
    forgets them. (A ``cuda`` device object needs no GPU; the self-test is replaced.)"""
    calls = []
    monkeypatch.setattr(attention_backend, "triton_self_test", lambda device: calls.append(str(device)) or True)
    attention_backend.reset_triton_checks()
    for device in ("cuda:0", "cuda:0", "cuda:1", "cuda:0"):
        assert triton_available(torch.device(device))
    assert calls == ["cuda:0", "cuda:1"]
    attention_backend.reset_triton_checks()
    assert triton_available(torch.device("cuda:0"))
    assert calls == ["cuda:0", "cuda:1", "cuda:0"]
    attention_backend.reset_triton_checks()  # leave no fake result behind for later tests


@pytest.mark.parametrize("broken, message", [
    (lambda q, k, v, ratio: (_ for _ in ()).throw(RuntimeError("no kernel image")), "failed its self-test"),
    (lambda q, k, v, ratio: 2 * window_attention_reference(q, k, v, ratio), "disagrees with the torch backend"),
])
def test_self_test_rejects_failing_or_wrong_kernels(broken, message, monkeypatch):
    monkeypatch.setattr(triton_module, "window_attention_triton", broken)
    with pytest.warns(UserWarning, match=message):
        assert not triton_self_test(torch.device("cpu"))
