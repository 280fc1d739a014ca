"""The gathered-window torch backend against the dense reference formula.

Shapes are tiny and chosen so that, between them, windows are truncated at every border
(top, bottom, left, right, both ends of an axis) and some are not truncated at all.
"""
import math
import struct

import pytest
import torch

from anyup_dense.ops.window_attention import dense_window_mask, window_attention_reference, window_attention_torch
from anyup_dense.ops.window_geometry import window_bounds
from anyup_dense.upsamplers.attention_backend import window_attention
from helpers import LargestTensor

# (B, heads, Ho, Wo, h, w, d, C, ratio)
CASES = [
    (1, 4, 13, 9, 5, 7, 8, 6, 0.1),     # non-square, small windows truncated at all four borders
    (2, 2, 11, 17, 6, 4, 4, 1, 0.25),   # batch 2, C = 1, wider windows
    (1, 3, 7, 5, 9, 3, 4, 5, 0.6),      # windows clamped at both ends of an axis at once
    (2, 1, 6, 10, 3, 5, 2, 3, 0.0),     # ratio 0: full attention
    (1, 4, 4, 3, 8, 6, 4, 7, 0.1),      # output smaller than the key grid
]


def _inputs(b, nh, ho, wo, h, w, d, c, dtype=torch.float32, requires_grad=False):
    q = (2 * torch.randn(b, nh, ho, wo, d, dtype=dtype)).requires_grad_(requires_grad)
    k = (2 * torch.randn(b, nh, h, w, d, dtype=dtype)).requires_grad_(requires_grad)
    v = torch.randn(b, c, h, w, dtype=dtype).requires_grad_(requires_grad)
    return q, k, v


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


def _f32(x: float) -> float:
    """Round a Python float to the nearest float32."""
    return struct.unpack("f", struct.pack("f", x))[0]


def _python_bounds(out_len, in_len, ratio):
    """Plain-Python float32 re-derivation of the official window rule (spec §4.6)."""
    r = _f32(ratio)
    starts, ends = [], []
    for i in range(out_len):
        centre = _f32(_f32(i + 0.5) / out_len)
        lo = min(max(_f32(centre - r), 0.0), 1.0)
        hi = min(max(_f32(centre + r), 0.0), 1.0)
        starts.append(math.floor(_f32(lo * in_len)))
        ends.append(math.ceil(_f32(hi * in_len)))
    return starts, ends


@pytest.mark.parametrize("ratio", [0.1, 0.05, 0.25])
def test_window_bounds_match_python_float32(ratio):
    for out_len in (7, 13, 60, 100, 150, 224, 448):
        for in_len in (3, 8, 16, 32, 40):
            start, end = window_bounds(out_len, in_len, ratio)
            assert (start.tolist(), end.tolist()) == _python_bounds(out_len, in_len, ratio), (out_len, in_len)


def test_window_bounds_float32_differs_from_float64_somewhere():
    """The float32 order matters: a float64 derivation flips at least one boundary (spec §4.6)."""
    flips = 0
    for out_len, in_len in [(60, 8), (100, 16), (150, 32), (100, 40), (60, 32), (150, 16)]:
        start, end = window_bounds(out_len, in_len, 0.1)
        for i in range(out_len):
            c = (i + 0.5) / out_len
            lo, hi = min(max(c - 0.1, 0.0), 1.0), min(max(c + 0.1, 0.0), 1.0)
            flips += (math.floor(lo * in_len) != start[i]) + (math.ceil(hi * in_len) != end[i])
    assert flips > 0


def test_window_bounds_ratio_zero_is_full():
    start, end = window_bounds(5, 7, 0.0)
    assert start.tolist() == [0] * 5 and end.tolist() == [7] * 5


def test_cases_cover_every_truncation():
    """Across CASES, windows are clamped at the low end, the high end, both, and neither."""
    seen = set()
    for _, _, ho, wo, h, w, _, _, ratio in CASES:
        if ratio == 0:
            continue
        for out_len, in_len in ((ho, h), (wo, w)):
            centre = (torch.arange(out_len, dtype=torch.float32) + 0.5) / out_len
            low, high = (centre - ratio < 0).tolist(), (centre + ratio > 1).tolist()
            seen.update(zip(low, high))
    assert seen == {(False, False), (True, False), (False, True), (True, True)}


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c)))
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-6), (torch.float64, 1e-12)])
def test_torch_matches_reference(case, dtype, tol):
    q, k, v = _inputs(*case[:-1], dtype=dtype)
    ratio = case[-1]
    expected = window_attention_reference(q, k, v, ratio)
    got = window_attention(q, k, v, ratio, backend="torch")
    assert got.shape == (case[0], case[7], case[2], case[3]) and got.dtype == dtype
    assert _rel_err(got, expected) < tol


def test_reference_is_a_masked_convex_combination():
    """Sanity of the reference itself: probabilities vanish outside the window and sum to 1."""
    q, k, v = _inputs(1, 2, 6, 5, 4, 7, 4, 3, dtype=torch.float64)
    _, probs = window_attention_reference(q, k, v, 0.2, return_probs=True)
    mask = dense_window_mask((6, 5), (4, 7), 0.2)
    assert torch.all(probs[:, ~mask] == 0)
    assert torch.allclose(probs.sum(-1), torch.ones_like(probs.sum(-1)), atol=1e-12)


@pytest.mark.parametrize("case", CASES[:3], ids=lambda c: "x".join(map(str, c)))
def test_chunking_gives_identical_results(case):
    q, k, v = _inputs(*case[:-1])
    ratio, wo = case[-1], case[3]
    outputs = [window_attention_torch(q, k, v, ratio, max_pixels_per_chunk=m) for m in (1, wo, 2 * wo + 1, 10 ** 6)]
    for out in outputs[1:]:
        assert torch.equal(out, outputs[0])


def test_chunk_size_must_be_positive():
    q, k, v = _inputs(1, 1, 4, 4, 2, 2, 2, 1)
    with pytest.raises(ValueError, match="max_pixels_per_chunk"):
        window_attention_torch(q, k, v, 0.1, max_pixels_per_chunk=0)


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c)))
def test_torch_gradients_match_reference(case):
    q, k, v = _inputs(*case[:-1], dtype=torch.float64, requires_grad=True)
    ratio = case[-1]
    weight = torch.randn(case[0], case[7], case[2], case[3], dtype=torch.float64)
    grads = {}
    for backend in ("reference", "torch"):
        out = window_attention(q, k, v, ratio, backend=backend, max_pixels_per_chunk=2 * case[3])
        grads[backend] = torch.autograd.grad((out * weight).sum(), (q, k, v))
    for got, expected in zip(grads["torch"], grads["reference"]):
        assert _rel_err(got, expected) < 1e-12




def test_torch_backend_never_builds_dense_scores():
    b, nh, ho, wo, h, w, d, c = 1, 4, 64, 64, 48, 48, 8, 16
    q, k, v = _inputs(b, nh, ho, wo, h, w, d, c)
    dense = b * nh * ho * wo * h * w
    with LargestTensor() as ref_mode:
        window_attention_reference(q, k, v, 0.05)
    assert ref_mode.largest >= dense  # the recorder does see the dense logits
    with LargestTensor() as mode:
        window_attention_torch(q, k, v, 0.05)
    assert mode.largest < dense // 2
    with LargestTensor() as chunked:
        window_attention_torch(q, k, v, 0.05, max_pixels_per_chunk=4 * wo)
    assert chunked.largest < dense // 16
