"""Triton window attention with AnyUp semantics (forward and backward kernels).

Same contract as :func:`anyup_dense.ops.window_attention.window_attention_reference`:
q [B,nH,Ho,Wo,d], k [B,nH,h,w,d], v [B,C,h,w] -> [B,C,Ho,Wo]; per output pixel a
rectangular key window (:func:`~anyup_dense.ops.window_geometry.window_bounds`), per-head
softmax of (q/sqrt(d)).k over it, the heads' probabilities averaged, then applied to the
raw values.

Design. Programs own a tile of TILE_H x TILE_W output pixels. Window bounds are monotone
in the pixel position, so a tile's windows lie in one union rectangle; a program streams
that rectangle (flattened, BLOCK_N keys at a time) through registers and masks the keys
outside each pixel's own window. Nothing of size [Q, window] reaches global memory; the
only extra buffer is one float32 per (pixel, head).

Because the heads are averaged *after* their softmaxes, a single online-softmax pass would
need one [pixels, C] accumulator per head. Instead (two passes, C >> d):
  1. ``_lse_kernel`` (grid tiles x B*nH): online max/sum over the window -> per-head
     log-sum-exp ``lse`` [B,nH,Ho,Wo] (float32).
  2. ``_forward_kernel`` (grid tiles x B x C-blocks): recompute the scores, form the exact
     head-averaged probabilities P = mean_h exp(s_h - lse_h) and accumulate P @ V in float32.
Backward, with dP = dO . V (over channels) and s_h the scaled scores:
  dV[j] = sum_i P_ij dO_i                               (``_dv_kernel``, atomics onto keys)
  delta_h[i] = sum_j P^h_ij dP_ij                       (``_delta_kernel``)
  dS^h_ij = P^h_ij (dP_ij - delta_h[i]) / nH
  dq_h = dS^h k_h / sqrt(d);  dk_h = dS^h^T q_h / sqrt(d) (``_dqdk_kernel``, atomics for dk)
dk and dv are accumulated in float32 buffers. Inputs may be float32 (IEEE dots), float16
or bfloat16 (tensor-core dots, float32 accumulation); outputs and gradients take the
input dtype. On CPU the kernels run under ``TRITON_INTERPRET=1`` (tests only).
"""
import math
import os

import torch
import triton
from torch.autograd.function import once_differentiable
import triton.language as tl

from anyup_dense.ops.window_geometry import check_attention_shapes, window_bounds

TILE_H = TILE_W = 8
_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"


def _configs(with_channels: bool):
    """Autotuning space (a single small config under the interpreter)."""
    if _INTERPRET:
        return [triton.Config({"BLOCK_N": 16, **({"BLOCK_C": 16} if with_channels else {})}, num_warps=1)]
    channel_blocks = (32, 64, 128) if with_channels else (None,)
    return [triton.Config({"BLOCK_N": n, **({"BLOCK_C": c} if c else {})}, num_warps=warps, num_stages=stages)
            for n in (16, 32, 64) for c in channel_blocks for warps in (4, 8) for stages in (1, 2)]


_KEY = ["C", "D", "N_HEADS"]
# The interpreter mis-computes bfloat16 tl.dot (numpy has no bfloat16): upcast there only.
_UPCAST_DOTS = tl.constexpr(_INTERPRET)


@triton.jit
def _dot(a, b, PRECISION: tl.constexpr):
    """a @ b with float32 accumulation (``PRECISION`` "ieee" for float32 inputs)."""
    if _UPCAST_DOTS:
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    return tl.dot(a, b, input_precision=PRECISION)


@triton.jit
def _tile(pid, Ho, Wo, rs_ptr, re_ptr, cs_ptr, ce_ptr, TILE_H: tl.constexpr, TILE_W: tl.constexpr):
    """Pixels of tile ``pid`` (flattened pix = i*Wo + j, validity, own window bounds) and the
    union window (first row, first column, width, number of keys)."""
    n_tw = tl.cdiv(Wo, TILE_W)
    i0 = (pid // n_tw) * TILE_H
    j0 = (pid % n_tw) * TILE_W
    offs = tl.arange(0, TILE_H * TILE_W)
    i = i0 + offs // TILE_W
    j = j0 + offs % TILE_W
    valid = (i < Ho) & (j < Wo)
    rs = tl.load(rs_ptr + i, mask=i < Ho, other=0)
    re = tl.load(re_ptr + i, mask=i < Ho, other=0)
    cs = tl.load(cs_ptr + j, mask=j < Wo, other=0)
    ce = tl.load(ce_ptr + j, mask=j < Wo, other=0)
    ur0 = tl.load(rs_ptr + i0)
    uc0 = tl.load(cs_ptr + j0)
    uw = tl.load(ce_ptr + tl.minimum(j0 + TILE_W, Wo) - 1) - uc0
    n_union = (tl.load(re_ptr + tl.minimum(i0 + TILE_H, Ho) - 1) - ur0) * uw
    return i * Wo + j, valid, rs, re, cs, ce, ur0, uc0, uw, n_union


@triton.jit
def _keys(t0, w, ur0, uc0, uw, n_union, rs, re, cs, ce, BLOCK_N: tl.constexpr):
    """Keys t0..t0+BLOCK_N of the flattened union: flat key index r*w + c, in-union flag,
    and the [pixels, keys] mask of keys inside each pixel's window."""
    t = t0 + tl.arange(0, BLOCK_N)
    kr = ur0 + t // uw
    kc = uc0 + t % uw
    in_union = t < n_union
    inside = (in_union[None, :] & (kr[None, :] >= rs[:, None]) & (kr[None, :] < re[:, None])
              & (kc[None, :] >= cs[:, None]) & (kc[None, :] < ce[:, None]))
    return kr * w + kc, in_union, inside


@triton.jit
def _load_rows(ptr, rows, row_ok, D, BLOCK_D: tl.constexpr):
    """[len(rows), BLOCK_D] block of a row-major [*, D] matrix (zero padded)."""
    offs_d = tl.arange(0, BLOCK_D)
    return tl.load(ptr + rows[:, None] * D + offs_d[None, :], mask=row_ok[:, None] & (offs_d[None, :] < D), other=0.0)


@triton.jit
def _load_channels(ptr, pos, pos_ok, c0, C, stride_c, BLOCK_C: tl.constexpr):
    """[len(pos), BLOCK_C] block of a channel-major [C, stride_c] map (zero padded)."""
    offs_c = c0 + tl.arange(0, BLOCK_C)
    return tl.load(ptr + offs_c[None, :] * stride_c + pos[:, None],
                   mask=pos_ok[:, None] & (offs_c[None, :] < C), other=0.0)


@triton.jit
def _head_probs(q_ptr, k_ptr, lse_ptr, pix, valid, key, key_ok, inside, D, scale,
                BLOCK_D: tl.constexpr, PRECISION: tl.constexpr):
    """exp(s - lse) of one head for a [pixels, keys] block, 0 outside the windows."""
    s = _dot(_load_rows(q_ptr, pix, valid, D, BLOCK_D), tl.trans(_load_rows(k_ptr, key, key_ok, D, BLOCK_D)),
             PRECISION) * scale
    lse = tl.load(lse_ptr + pix, mask=valid, other=0.0)
    return tl.where(inside, tl.exp(s - lse[:, None]), 0.0)


@triton.jit
def _mean_probs(q_ptr, k_ptr, lse_ptr, b, pix, valid, key, key_ok, inside, N_HEADS, HoWo, hw, D, scale,
                BLOCK_D: tl.constexpr, PRECISION: tl.constexpr, BLOCK_N: tl.constexpr):
    """Head-averaged probabilities of a [pixels, keys] block."""
    p = tl.zeros([pix.shape[0], BLOCK_N], dtype=tl.float32)
    for hh in range(N_HEADS):
        bh = b * N_HEADS + hh
        p += _head_probs(q_ptr + bh * HoWo * D, k_ptr + bh * hw * D, lse_ptr + bh * HoWo, pix, valid, key, key_ok,
                         inside, D, scale, BLOCK_D, PRECISION)
    return p / N_HEADS


@triton.jit
def _grad_probs(do_ptr, v_ptr, pix, valid, key, key_ok, C, HoWo, hw,
                BLOCK_C: tl.constexpr, BLOCK_N: tl.constexpr, PRECISION: tl.constexpr):
    """dP = dO . V over all channels for a [pixels, keys] block (float32)."""
    dp = tl.zeros([pix.shape[0], BLOCK_N], dtype=tl.float32)
    for c0 in range(0, C, BLOCK_C):
        do = _load_channels(do_ptr, pix, valid, c0, C, HoWo, BLOCK_C)
        v = _load_channels(v_ptr, key, key_ok, c0, C, hw, BLOCK_C)
        dp += _dot(do, tl.trans(v), PRECISION)
    return dp


@triton.autotune(configs=_configs(False), key=_KEY)
@triton.jit
def _lse_kernel(q_ptr, k_ptr, lse_ptr, rs_ptr, re_ptr, cs_ptr, ce_ptr, C, N_HEADS, Ho, Wo, h, w, D, scale,
                BLOCK_D: tl.constexpr, TILE_H: tl.constexpr, TILE_W: tl.constexpr, PRECISION: tl.constexpr,
                BLOCK_N: tl.constexpr):
    bh = tl.program_id(1).to(tl.int64)
    pix, valid, rs, re, cs, ce, ur0, uc0, uw, n_union = _tile(tl.program_id(0), Ho, Wo, rs_ptr, re_ptr, cs_ptr,
                                                              ce_ptr, TILE_H, TILE_W)
    q_ptr += bh * Ho * Wo * D
    k_ptr += bh * h * w * D
    q = _load_rows(q_ptr, pix, valid, D, BLOCK_D)
    m = tl.full([TILE_H * TILE_W], -1e30, dtype=tl.float32)
    total = tl.zeros([TILE_H * TILE_W], dtype=tl.float32)
    for t0 in range(0, n_union, BLOCK_N):
        key, key_ok, inside = _keys(t0, w, ur0, uc0, uw, n_union, rs, re, cs, ce, BLOCK_N)
        s = _dot(q, tl.trans(_load_rows(k_ptr, key, key_ok, D, BLOCK_D)), PRECISION) * scale
        s = tl.where(inside, s, float("-inf"))
        m_new = tl.maximum(m, tl.max(s, 1))
        total = total * tl.exp(m - m_new) + tl.sum(tl.exp(s - m_new[:, None]), 1)
        m = m_new
    tl.store(lse_ptr + bh * Ho * Wo + pix, m + tl.log(tl.where(valid, total, 1.0)), mask=valid)


@triton.autotune(configs=_configs(True), key=_KEY)
@triton.jit
def _forward_kernel(q_ptr, k_ptr, v_ptr, lse_ptr, out_ptr, rs_ptr, re_ptr, cs_ptr, ce_ptr, C, N_HEADS, Ho, Wo,
                    h, w, D, scale, BLOCK_D: tl.constexpr, TILE_H: tl.constexpr, TILE_W: tl.constexpr,
                    PRECISION: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr):
    b = tl.program_id(1).to(tl.int64)
    c0 = tl.program_id(2) * BLOCK_C
    pix, valid, rs, re, cs, ce, ur0, uc0, uw, n_union = _tile(tl.program_id(0), Ho, Wo, rs_ptr, re_ptr, cs_ptr,
                                                              ce_ptr, TILE_H, TILE_W)
    v_ptr += b * C * h * w
    acc = tl.zeros([TILE_H * TILE_W, BLOCK_C], dtype=tl.float32)
    for t0 in range(0, n_union, BLOCK_N):
        key, key_ok, inside = _keys(t0, w, ur0, uc0, uw, n_union, rs, re, cs, ce, BLOCK_N)
        p = _mean_probs(q_ptr, k_ptr, lse_ptr, b, pix, valid, key, key_ok, inside, N_HEADS, Ho * Wo, h * w, D,
                        scale, BLOCK_D, PRECISION, BLOCK_N)
        v = _load_channels(v_ptr, key, key_ok, c0, C, h * w, BLOCK_C)
        acc += _dot(p.to(v.dtype), v, PRECISION)
    offs_c = c0 + tl.arange(0, BLOCK_C)
    tl.store(out_ptr + b * C * Ho * Wo + offs_c[None, :] * Ho * Wo + pix[:, None],
             acc.to(out_ptr.dtype.element_ty), mask=valid[:, None] & (offs_c[None, :] < C))


@triton.autotune(configs=_configs(True), key=_KEY)
@triton.jit
def _delta_kernel(q_ptr, k_ptr, v_ptr, lse_ptr, do_ptr, delta_ptr, rs_ptr, re_ptr, cs_ptr, ce_ptr, C, N_HEADS,
                  Ho, Wo, h, w, D, scale, BLOCK_D: tl.constexpr, TILE_H: tl.constexpr, TILE_W: tl.constexpr,
                  PRECISION: tl.constexpr, BLOCK_HEADS: tl.constexpr, BLOCK_N: tl.constexpr,
                  BLOCK_C: tl.constexpr):
    b = tl.program_id(1).to(tl.int64)
    pix, valid, rs, re, cs, ce, ur0, uc0, uw, n_union = _tile(tl.program_id(0), Ho, Wo, rs_ptr, re_ptr, cs_ptr,
                                                              ce_ptr, TILE_H, TILE_W)
    v_ptr += b * C * h * w
    do_ptr += b * C * Ho * Wo
    heads = tl.arange(0, BLOCK_HEADS)
    delta = tl.zeros([TILE_H * TILE_W, BLOCK_HEADS], dtype=tl.float32)
    for t0 in range(0, n_union, BLOCK_N):
        key, key_ok, inside = _keys(t0, w, ur0, uc0, uw, n_union, rs, re, cs, ce, BLOCK_N)
        dp = _grad_probs(do_ptr, v_ptr, pix, valid, key, key_ok, C, Ho * Wo, h * w, BLOCK_C, BLOCK_N, PRECISION)
        for hh in range(N_HEADS):
            bh = b * N_HEADS + hh
            p = _head_probs(q_ptr + bh * Ho * Wo * D, k_ptr + bh * h * w * D, lse_ptr + bh * Ho * Wo, pix, valid, key,
                            key_ok, inside, D, scale, BLOCK_D, PRECISION)
            delta += tl.where(heads[None, :] == hh, tl.sum(p * dp, 1)[:, None], 0.0)
    tl.store(delta_ptr + (b * N_HEADS + heads[None, :]) * Ho * Wo + pix[:, None], delta,
             mask=valid[:, None] & (heads[None, :] < N_HEADS))


@triton.autotune(configs=_configs(True), key=_KEY, reset_to_zero=["dk_ptr"])
@triton.jit
def _dqdk_kernel(q_ptr, k_ptr, v_ptr, lse_ptr, do_ptr, delta_ptr, dq_ptr, dk_ptr, rs_ptr, re_ptr, cs_ptr, ce_ptr,
                 C, N_HEADS, Ho, Wo, h, w, D, scale, BLOCK_D: tl.constexpr, TILE_H: tl.constexpr,
                 TILE_W: tl.constexpr, PRECISION: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr):
    bh = tl.program_id(1).to(tl.int64)
    b = bh // N_HEADS
    pix, valid, rs, re, cs, ce, ur0, uc0, uw, n_union = _tile(tl.program_id(0), Ho, Wo, rs_ptr, re_ptr, cs_ptr,
                                                              ce_ptr, TILE_H, TILE_W)
    q_ptr += bh * Ho * Wo * D
    k_ptr += bh * h * w * D
    dk_ptr += bh * h * w * D
    v_ptr += b * C * h * w
    do_ptr += b * C * Ho * Wo
    q = _load_rows(q_ptr, pix, valid, D, BLOCK_D)
    lse = tl.load(lse_ptr + bh * Ho * Wo + pix, mask=valid, other=0.0)
    delta = tl.load(delta_ptr + bh * Ho * Wo + pix, mask=valid, other=0.0)
    dq = tl.zeros([TILE_H * TILE_W, BLOCK_D], dtype=tl.float32)
    offs_d = tl.arange(0, BLOCK_D)
    for t0 in range(0, n_union, BLOCK_N):
        key, key_ok, inside = _keys(t0, w, ur0, uc0, uw, n_union, rs, re, cs, ce, BLOCK_N)
        k = _load_rows(k_ptr, key, key_ok, D, BLOCK_D)
        s = _dot(q, tl.trans(k), PRECISION) * scale
        p = tl.where(inside, tl.exp(s - lse[:, None]), 0.0)
        dp = _grad_probs(do_ptr, v_ptr, pix, valid, key, key_ok, C, Ho * Wo, h * w, BLOCK_C, BLOCK_N, PRECISION)
        ds = p * (dp - delta[:, None]) * (scale / N_HEADS)
        dq += _dot(ds.to(k.dtype), k, PRECISION)
        dk = _dot(tl.trans(ds).to(q.dtype), q, PRECISION)
        tl.atomic_add(dk_ptr + key[:, None] * D + offs_d[None, :], dk, mask=key_ok[:, None] & (offs_d[None, :] < D))
    tl.store(dq_ptr + bh * Ho * Wo * D + pix[:, None] * D + offs_d[None, :], dq.to(dq_ptr.dtype.element_ty),
             mask=valid[:, None] & (offs_d[None, :] < D))


@triton.autotune(configs=_configs(True), key=_KEY, reset_to_zero=["dv_ptr"])
@triton.jit
def _dv_kernel(q_ptr, k_ptr, lse_ptr, do_ptr, dv_ptr, rs_ptr, re_ptr, cs_ptr, ce_ptr, C, N_HEADS, Ho, Wo, h, w, D,
               scale, BLOCK_D: tl.constexpr, TILE_H: tl.constexpr, TILE_W: tl.constexpr,
               PRECISION: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr):
    b = tl.program_id(1).to(tl.int64)
    c0 = tl.program_id(2) * BLOCK_C
    pix, valid, rs, re, cs, ce, ur0, uc0, uw, n_union = _tile(tl.program_id(0), Ho, Wo, rs_ptr, re_ptr, cs_ptr,
                                                              ce_ptr, TILE_H, TILE_W)
    do = _load_channels(do_ptr + b * C * Ho * Wo, pix, valid, c0, C, Ho * Wo, BLOCK_C)
    dv_ptr += b * C * h * w
    offs_c = c0 + tl.arange(0, BLOCK_C)
    for t0 in range(0, n_union, BLOCK_N):
        key, key_ok, inside = _keys(t0, w, ur0, uc0, uw, n_union, rs, re, cs, ce, BLOCK_N)
        p = _mean_probs(q_ptr, k_ptr, lse_ptr, b, pix, valid, key, key_ok, inside, N_HEADS, Ho * Wo, h * w, D,
                        scale, BLOCK_D, PRECISION, BLOCK_N)
        dv = _dot(tl.trans(p).to(do.dtype), do, PRECISION)
        tl.atomic_add(dv_ptr + offs_c[None, :] * h * w + key[:, None], dv,
                      mask=key_ok[:, None] & (offs_c[None, :] < C))


class _Problem:
    """Shapes, window bounds and the launch arguments shared by all kernels."""

    def __init__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ratio: float):
        self.b, self.heads, self.ho, self.wo, self.d = q.shape
        self.h, self.w = k.shape[2:4]
        self.c = v.shape[1]
        rows = window_bounds(self.ho, self.h, ratio, q.device)
        cols = window_bounds(self.wo, self.w, ratio, q.device)
        self.bounds = [t.to(torch.int32) for t in (*rows, *cols)]
        self.tiles = triton.cdiv(self.ho, TILE_H) * triton.cdiv(self.wo, TILE_W)
        self.args = dict(C=self.c, N_HEADS=self.heads, Ho=self.ho, Wo=self.wo, h=self.h, w=self.w,
                         D=self.d, scale=1.0 / math.sqrt(self.d), BLOCK_D=max(16, triton.next_power_of_2(self.d)),
                         TILE_H=TILE_H, TILE_W=TILE_W,
                         PRECISION="ieee" if q.dtype == torch.float32 else "tf32")

    def channel_grid(self, meta):
        return self.tiles, self.b, triton.cdiv(self.c, meta["BLOCK_C"])


def _forward(q, k, v, problem: _Problem):
    lse = torch.empty(problem.b, problem.heads, problem.ho, problem.wo, device=q.device, dtype=torch.float32)
    _lse_kernel[(problem.tiles, problem.b * problem.heads)](q, k, lse, *problem.bounds, **problem.args)
    out = torch.empty(problem.b, problem.c, problem.ho, problem.wo, device=q.device, dtype=v.dtype)
    _forward_kernel[problem.channel_grid](q, k, v, lse, out, *problem.bounds, **problem.args)
    return out, lse


class _WindowAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, ratio):
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        problem = _Problem(q, k, v, ratio)
        out, lse = _forward(q, k, v, problem)
        ctx.save_for_backward(q, k, v, lse)
        ctx.problem = problem
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        q, k, v, lse = ctx.saved_tensors
        problem = ctx.problem
        grad_out = grad_out.contiguous()
        dq = dk = dv = None
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            delta = torch.empty_like(lse)
            _delta_kernel[(problem.tiles, problem.b)](q, k, v, lse, grad_out, delta, *problem.bounds,
                                                      BLOCK_HEADS=triton.next_power_of_2(problem.heads), **problem.args)
            dq = torch.empty_like(q)
            dk32 = torch.zeros(k.shape, device=k.device, dtype=torch.float32)
            _dqdk_kernel[(problem.tiles, problem.b * problem.heads)](q, k, v, lse, grad_out, delta, dq, dk32,
                                                                     *problem.bounds, **problem.args)
            dk = dk32.to(k.dtype)
        if ctx.needs_input_grad[2]:
            dv32 = torch.zeros(v.shape, device=v.device, dtype=torch.float32)
            _dv_kernel[problem.channel_grid](q, k, lse, grad_out, dv32, *problem.bounds, **problem.args)
            dv = dv32.to(v.dtype)
        return dq, dk, dv, None


def window_attention_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ratio: float) -> torch.Tensor:
    """AnyUp window attention on Triton. q [B,nH,Ho,Wo,d], k [B,nH,h,w,d], v [B,C,h,w] -> [B,C,Ho,Wo].

    Differentiable in q, k and v, once (``create_graph=True`` raises on the second
    derivative). float32, float16 or bfloat16 (one dtype for all three; the dispatcher
    :func:`~anyup_dense.upsamplers.attention_backend.window_attention` casts mixed inputs).
    """
    check_attention_shapes(q, k, v)
    if not (q.dtype == k.dtype == v.dtype) or q.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"q, k, v must share one dtype among float32/float16/bfloat16, got "
                         f"{q.dtype}, {k.dtype}, {v.dtype}")
    return _WindowAttention.apply(q, k, v, ratio)
