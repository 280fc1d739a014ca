"""Building blocks of AnyUp, with the official parameter names.

* :class:`ResBlock`: GN -> SiLU -> 1x1 conv -> GN -> SiLU -> 1x1 conv, plus a shortcut
  (identity, or a bias-free 1x1 conv when the width changes). Keys ``block.{0,2,3,5}``,
  ``shortcut.weight``.
* :class:`FeatureAgnosticLayer`: the "LFU" (key ``basis``), reproducing the official
  channel-major view (see its docstring) that the released weights were trained with.
* :class:`PositionalModulation`: the official "RoPE" (key ``freqs``), applied once to the
  image encoding.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from anyup_dense.ops.chunking import DEFAULT_CHUNK_ELEMENTS
from anyup_dense.upsamplers.recompute import recompute_in_backward

GROUPS = 8


class ResBlock(nn.Module):
    """[B, cin, H, W] -> [B, cout, H, W]; GroupNorm statistics over the whole map."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.GroupNorm(GROUPS, cin),
            nn.SiLU(),
            nn.Conv2d(cin, cout, 1, bias=False),
            nn.GroupNorm(GROUPS, cout),
            nn.SiLU(),
            nn.Conv2d(cout, cout, 1, bias=False),
        )
        self.shortcut = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.block(x)


class FeatureAgnosticLayer(nn.Module):
    """Maps features with any channel count C to ``out_channels`` (M) channels.

    [B, C, h, w] -> [B, M, h, w]. Each input channel is correlated with each of the M
    ``basis`` filters (zero padding, divided by the number of in-image taps). The result is
    stored channel-major (index c*M + m) and then, as in the official code, re-read as
    [M, C] (index j*C + s): softmax over the M axis, mean over the C axis. For C = 1 this is
    the paper's formula; for other C it mixes channels, and the released weights depend on
    exactly this view, so it is kept.

    Memory: the official layer holds all C*M filtered maps at once (C=1024 at 96x96:
    14.6 GB). Here the C axis of the re-read view is processed in chunks of at most
    ``max_elements`` filtered values (B*M*S*h*w for S columns s), each chunk recomputed in
    the backward pass, so both passes stay within a few chunk-sized buffers.
    """

    def __init__(self, out_channels: int, kernel_size: int, max_elements: int = DEFAULT_CHUNK_ELEMENTS):
        super().__init__()
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.max_elements = max_elements
        self.basis = nn.Parameter(torch.randn(out_channels, 1, kernel_size, kernel_size))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        b, c, h, w = features.shape
        pad = self.kernel_size // 2
        padded = F.pad(features, (pad,) * 4)
        ones = features.new_ones(1, 1, h, w)
        taps = F.conv2d(F.pad(ones, (pad,) * 4), features.new_ones(1, 1, self.kernel_size, self.kernel_size))
        step = max(1, self.max_elements // (b * self.out_channels * h * w))
        total = 0
        for start in range(0, c, step):
            columns = torch.arange(start, min(c, start + step), device=features.device)
            total = total + recompute_in_backward(self._column_sum, padded, taps, columns, c, module=self)
        return total / c

    def _column_sum(self, padded: torch.Tensor, taps: torch.Tensor, columns: torch.Tensor,
                    channels: int) -> torch.Tensor:
        """Sum over the re-read columns s in ``columns`` of softmax_j(filtered[j*C + s] / taps):
        [B, M, h, w]. Flat index n = j*C + s is input channel n // M filtered with basis n % M."""
        m = self.out_channels
        flat = (torch.arange(m, device=columns.device)[:, None] * channels + columns[None, :]).reshape(-1)
        filtered = F.conv2d(padded[:, flat // m], self.basis[flat % m], groups=flat.numel())
        return (filtered / taps).unflatten(1, (m, columns.numel())).softmax(dim=1).sum(dim=2)


class PositionalModulation(nn.Module):
    """AnyUp's one-shot 2-D "RoPE": ``x * cos(a) + rotate_half(x) * sin(a)``.

    [B, D, H, W] -> [B, D, H, W] with a = y * freqs[0] + x * freqs[1], where y, x are
    ``linspace(0, 1)`` pixel coordinates and ``rotate_half(x) = cat(-x[D/2:], x[:D/2])``.
    ``freqs`` [2, D] is trained: load it from the checkpoint. The initial value below is the
    official one (theta = 100, rows on the first half, columns on the second).
    """

    def __init__(self, dim: int, theta: float = 100.0):
        super().__init__()
        if dim % 4:
            raise ValueError(f"qk_dim must be a multiple of 4 for the positional modulation, got {dim}")
        quarter = dim // 4
        base = theta ** (-torch.arange(quarter, dtype=torch.float32) / (quarter - 1 if quarter > 1 else 1))
        freqs = torch.zeros(2, dim)
        freqs[0, : dim // 2] = 2 * torch.pi * base.repeat(2)
        freqs[1, dim // 2:] = 2 * torch.pi * base.repeat(2)
        self.freqs = nn.Parameter(freqs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, d, h, w = x.shape
        ys = torch.linspace(0, 1, h, device=x.device, dtype=x.dtype)
        xs = torch.linspace(0, 1, w, device=x.device, dtype=x.dtype)
        coords = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1)  # [H, W, 2]
        angle = (coords @ self.freqs).permute(2, 0, 1)  # [D, H, W]
        rotated = torch.cat([-x[:, d // 2:], x[:, : d // 2]], dim=1)
        return x * angle.cos() + rotated * angle.sin()
