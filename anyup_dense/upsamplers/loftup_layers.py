"""LoftUp's building blocks, with the official parameter names (github.com/andrehuang/loftup @ 6620d9b).

Every block here is per pixel (or per token) except :class:`MinMaxScaler`, which needs image-wide
statistics; :mod:`anyup_dense.upsamplers.loftup` evaluates them band by band.
"""
import math
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


def fourier_dtype(device: torch.device) -> torch.dtype:
    """Precision of the Fourier block: float64 wherever the device has it (MPS has not).

    The frequencies reach e^10 = 22026, so float32 rounding of a coordinate or colour already
    moves a phase by ~1e-3 rad; computing the block in float64 and casting its output makes every
    model dtype see the exact features (float32 output: rel_max ~1e-6 vs the float64 reference,
    instead of the official float32 code's ~2e-3).
    """
    return torch.float32 if device.type == "mps" else torch.float64


class RunningStatsBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` (same keys and buffers) that always normalises with its running
    statistics, as the official model does in eval mode. ``train()`` does not switch it to
    batch statistics: those would depend on how the image is split into chunks, and the
    released weights are used in eval mode. The buffers are never updated."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=False, momentum=0.0, eps=self.eps)


class MinMaxScaler(nn.Module):
    """Official ``MinMaxScaler``: per colour channel, (x - min) / max(max - min, 1e-4) - 0.5.

    ``per_image=False`` (official, default): min and max over the **whole batch**, so an image's
    output depends on the other images in the batch. ``per_image=True``: over each image alone
    (batch-independent; identical to the official result for batch size 1).
    """

    def __init__(self, per_image: bool = False):
        super().__init__()
        self.per_image = per_image

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B,3,H,W] -> [B,3,H,W] in [-0.5, 0.5]."""
        dims = (2, 3) if self.per_image else (0, 2, 3)
        low = x.amin(dim=dims, keepdim=True)
        span = x.amax(dim=dims, keepdim=True) - low
        return (x - low) / span.clamp_min(1e-4) - 0.5


class FourierFeatures(nn.Module):
    """Official ``ImplicitFeaturizer(learn_bias=True)``: sin/cos of M inputs at F frequencies.

    Inputs u (M of them): row coordinate, column coordinate (``linspace(-1, 1, n)`` of the full
    grid, both ends included) and, with colours, the 3 min-max-scaled colour channels.
    Frequencies w_f = exp(linspace(-2, 10, F)). Output channels, for f < F and d < M:
    ``sin(u_d * w_f + ps[f*M + d])`` at f*M + d, then the same with cos and ``pc``, then the
    colours themselves. ``biases`` is stored [2, M, F] but the official code re-reads each half
    in memory order as [F, M] (not a transpose): ps = biases[0].flatten(), pc = biases[1].flatten().
    """

    def __init__(self, n_inputs: int, n_freqs: int):
        super().__init__()
        self.n_inputs, self.n_freqs = n_inputs, n_freqs
        self.biases = nn.Parameter(torch.randn(2, n_inputs, n_freqs))

    def forward(self, grid_hw: Tuple[int, int], rows: Tuple[int, int], batch: int,
                colors: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Features of rows ``rows = (r0, r1)`` of a ``grid_hw`` grid -> [B, 2FM (+3), r1-r0, W].

        ``colors``: the scaled colours of those rows [B,3,r1-r0,W] (required iff M = 5). The
        result is in :func:`fourier_dtype`, whatever the parameters' dtype.
        """
        (height, width), (r0, r1) = grid_hw, rows
        device = self.biases.device
        dtype = fourier_dtype(device)
        y = torch.linspace(-1, 1, height, dtype=dtype, device=device)[r0:r1]
        x = torch.linspace(-1, 1, width, dtype=dtype, device=device)
        coords = torch.stack(torch.meshgrid(y, x, indexing="ij")).expand(batch, 2, r1 - r0, width)
        inputs = coords if colors is None else torch.cat([coords, colors.to(dtype)], dim=1)
        if inputs.shape[1] != self.n_inputs:
            raise ValueError(f"FourierFeatures expects {self.n_inputs} inputs, got {inputs.shape[1]}")
        freqs = torch.exp(torch.linspace(-2, 10, self.n_freqs, dtype=dtype, device=device))
        args = inputs[:, None] * freqs[None, :, None, None, None]  # [B, F, M, rows, W]
        phases = self.biases.to(dtype).reshape(2, 1, self.n_freqs, self.n_inputs, 1, 1)
        out_shape = (batch, self.n_freqs * self.n_inputs, r1 - r0, width)
        parts = [torch.sin(args + phases[0]).reshape(out_shape), torch.cos(args + phases[1]).reshape(out_shape)]
        if colors is not None:
            parts.append(colors.to(dtype))
        return torch.cat(parts, dim=1)


class CrossAttentionLayer(nn.Module):
    """Official pre-norm cross-attention: ``MHA(norm_q(q), norm_kv(kv), norm_kv(kv))``.

    ``attention`` is an ``nn.MultiheadAttention`` holding the official parameters
    (``in_proj_weight`` rows [0:E], [E:2E], [2E:3E] = W_q, W_k, W_v; ``out_proj``); it is
    evaluated with ``scaled_dot_product_attention``, which never stores the logits.
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(embed_dim=dim, num_heads=heads)

    def _project(self, x: torch.Tensor, part: int) -> torch.Tensor:
        """[B, N, E] -> [B, heads, N, E/heads] with the ``part``-th in-projection."""
        dim = x.shape[-1]
        att = self.attention
        x = F.linear(x, att.in_proj_weight[part * dim:(part + 1) * dim], att.in_proj_bias[part * dim:(part + 1) * dim])
        return x.unflatten(-1, (self.heads, dim // self.heads)).transpose(1, 2)

    def keys_values(self, kv: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Tokens [B, hw, E] -> projected keys and values, each [B, heads, hw, E/heads]."""
        kv = self.norm_kv(kv)
        return self._project(kv, 1), self._project(kv, 2)

    def forward(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """q [B, P, E] and :meth:`keys_values` -> attention output [B, P, E] (before the residual)."""
        queries = self._project(self.norm_q(q), 0)
        out = F.scaled_dot_product_attention(queries, keys, values, scale=1.0 / math.sqrt(queries.shape[-1]))
        return self.attention.out_proj(out.transpose(1, 2).flatten(2))


class FeedForward(nn.Module):
    """Official ``FeedForward``: LayerNorm -> Linear(E, hidden) -> GELU -> Linear(hidden, E)
    (``net`` indices 0, 1, 2, 4; 3 and 5 are dropout layers with p = 0)."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden_dim), nn.GELU(), nn.Dropout(0.0),
                                 nn.Linear(hidden_dim, dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CATransformer(nn.Module):
    """Official ``CATransformer``: per layer ``q += attn(q, kv); q += ffn(q)`` with the same
    key/value tokens in every layer, then a final LayerNorm. Per query token, so any subset
    of the queries can be processed on its own."""

    def __init__(self, dim: int, depth: int, heads: int, mlp_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.layers = nn.ModuleList(
            nn.ModuleList([CrossAttentionLayer(dim, heads), FeedForward(dim, mlp_dim)]) for _ in range(depth))

    def keys_values(self, kv: torch.Tensor):
        """Tokens [B, hw, E] -> per layer (keys, values) (see :meth:`CrossAttentionLayer.keys_values`)."""
        return [attn.keys_values(kv) for attn, _ in self.layers]

    def forward(self, q: torch.Tensor, keys_values) -> torch.Tensor:
        """q [B, P, E] and :meth:`keys_values` -> [B, P, E]."""
        for (attn, ffn), (keys, values) in zip(self.layers, keys_values):
            q = attn(q, keys, values) + q
            q = ffn(q) + q
        return self.norm(q)
