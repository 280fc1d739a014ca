"""Which window-attention backend runs AnyUp's attention, and the cached Triton self-test.

The kernels themselves are pure functions in :mod:`anyup_dense.ops`; this module holds the
one piece of process state: per CUDA device, whether the Triton kernels passed a one-time
self-test there (``backend="auto"`` uses Triton only where they did).
:func:`reset_triton_checks` forgets the results, so the next ``"auto"`` call tests again.
"""
import warnings
from typing import Dict, Optional

import torch

from anyup_dense.ops.chunking import check_chunk_size
from anyup_dense.ops.mixed_precision import autocast_off, common_dtype
from anyup_dense.ops.window_attention import window_attention_reference, window_attention_torch
from anyup_dense.ops.window_geometry import check_attention_shapes, check_window_ratio

BACKENDS = ("auto", "reference", "torch", "triton")

# str(device) -> passed the self-test there (filled by triton_available)
_TRITON_CHECKED: Dict[str, bool] = {}


def reset_triton_checks() -> None:
    """Forget every device's self-test result (the next ``backend="auto"`` call re-runs it)."""
    _TRITON_CHECKED.clear()


def triton_self_test(device: torch.device) -> bool:
    """Run the Triton kernels once on a small problem on ``device`` and compare them with the
    torch backend (forward and gradients). On failure, warn with the reason and return False."""
    try:
        from anyup_dense.ops.window_attention_triton import window_attention_triton
    except ImportError as error:
        warnings.warn(f"Triton window attention unavailable ({error}); using the torch backend")
        return False
    # The caller may be under no_grad, inference_mode or autocast (every evaluation loop):
    # the test must not depend on that.
    with torch.inference_mode(False), torch.enable_grad(), torch.autocast(device.type, enabled=False):
        generator = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(shape, generator=generator).to(device).requires_grad_()
                   for shape in ((1, 2, 19, 13, 16), (1, 2, 5, 4, 16), (1, 7, 5, 4)))
        try:
            out = window_attention_triton(q, k, v, 0.1)
            grads = torch.autograd.grad(out.square().sum(), (q, k, v))
        except Exception as error:  # noqa: BLE001 -- any compile/launch failure means: do not auto-select it
            warnings.warn(f"Triton window attention failed its self-test on {device} ({type(error).__name__}: "
                          f"{error}); using the torch backend")
            return False
        expected = window_attention_torch(q, k, v, 0.1)
        expected_grads = torch.autograd.grad(expected.square().sum(), (q, k, v))
    for ours, ref in zip((out, *grads), (expected, *expected_grads)):
        if not torch.allclose(ours, ref, rtol=1e-3, atol=1e-4):
            warnings.warn(f"Triton window attention disagrees with the torch backend on {device} "
                          f"(max |diff| {(ours - ref).abs().max().item():.2e}); using the torch backend")
            return False
    return True


def triton_available(device: torch.device) -> bool:
    """True when the Triton backend can run on ``device`` (CUDA) and passed its self-test there
    (run once per device until :func:`reset_triton_checks`; ``backend="triton"`` skips this check)."""
    if device.type != "cuda":
        return False
    key = str(device)
    if key not in _TRITON_CHECKED:
        _TRITON_CHECKED[key] = triton_self_test(device)
    return _TRITON_CHECKED[key]


def window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ratio: float, backend: str = "auto",
                     max_pixels_per_chunk: Optional[int] = None) -> torch.Tensor:
    """AnyUp window attention. q [B,nH,Ho,Wo,d], k [B,nH,h,w,d], v [B,C,h,w] -> [B,C,Ho,Wo].

    ``backend``: ``"auto"`` (Triton on CUDA when it passes a one-time self-test, else torch), ``"torch"``,
    ``"triton"`` or ``"reference"`` (dense; tests only). ``max_pixels_per_chunk`` bounds
    the output pixels processed at once by the torch backend.

    Mixed dtypes (autocast: q/k come out bf16/fp16 while v stays float32) compute in q/k's
    dtype with a float32 softmax and float32 accumulation; the result has that dtype.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    ratio = check_window_ratio(ratio)
    max_pixels_per_chunk = check_chunk_size(max_pixels_per_chunk)
    check_attention_shapes(q, k, v)
    q, k, v = common_dtype(q, k, v)
    if backend == "auto":
        backend = "triton" if triton_available(q.device) else "torch"
    # The backends choose their own precision (float32 softmax and accumulation).
    with autocast_off(q.device):
        if backend == "reference":
            return window_attention_reference(q, k, v, ratio)
        if backend == "torch":
            return window_attention_torch(q, k, v, ratio, max_pixels_per_chunk)
        from anyup_dense.ops.window_attention_triton import window_attention_triton  # needs triton

        return window_attention_triton(q, k, v, ratio)
