"""UPLiFT's building blocks, under the official module names (so the released checkpoints load
strictly), and its 17-neighbour Local Attender as a chunked op.

Residual rule ("residual_auto") of a skip tensor a (ca channels) and a branch b (cb channels):
a + b when ca == cb; a[:, :cb] + b when ca > cb (the first channels are kept); b with a added to
its first ca channels when ca < cb.

Local Attender, for attention weights A [B,17,2h,2w] (softmax over the 17 neighbours) and values
V [B,C,h,w] replicate-padded by 2 (Vp):

    out[b, c, 2y+i, 2x+j] = sum_d A[b, d, 2y+i, 2x+j] * Vp[b, c, y + 2 + dy_d, x + 2 + dx_d]

with the offsets :data:`OFFSETS` (in low-resolution pixels; all four sub-pixels of a cell share
its neighbours). The official code materialises the [B,C,17,h,2,w,2] product (6.8 GB at
C=384, 512^2); :func:`local_attention` computes it in chunks of low-resolution rows, in the
forward pass and again in the backward pass, so no pass holds more than one chunk of products.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

# (row, column) offsets of the 17 neighbours, in the order of the attention channels: a 3x3
# block plus the 8 points at distance 2 along the axes and diagonals.
OFFSETS = ((-2, -2), (-2, 0), (-2, 2), (-1, -1), (-1, 0), (-1, 1), (0, -2), (0, -1), (0, 0), (0, 1), (0, 2),
           (1, -1), (1, 0), (1, 1), (2, -2), (2, 0), (2, 2))
NEIGHBORS = len(OFFSETS)
PAD = 2
# Elements of one chunk of output (B * C * 2 rows * 2w per low-res row); 2**20 float32 = 4 MiB.
# The forward holds about two such buffers at once, the backward about four.
DEFAULT_CHUNK_ELEMENTS = 2 ** 20
# Elements of the attender output held at once before a final resize (2**24 float32 = 64 MiB).
RESIZE_GROUP_ELEMENTS = 2 ** 24


def residual_auto(skip: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
    """The official channel-mismatch residual of ``skip`` [B,ca,H,W] and ``branch`` [B,cb,H,W]
    -> [B,cb,H,W] (see the module docstring). ``branch`` must be a fresh result whose producer
    does not keep it for its backward (a convolution's output): the sum is written into it."""
    count = min(skip.shape[1], branch.shape[1])
    branch[:, :count] += skip[:, :count]
    return branch


def leading_channels(parts: Sequence[torch.Tensor], count: int) -> torch.Tensor:
    """The first ``count`` channels (or all, if fewer) of the channel concatenation of ``parts``."""
    taken = []
    for part in parts:
        remaining = count - sum(t.shape[1] for t in taken)
        if remaining <= 0:
            break
        taken.append(part[:, :remaining])
    return taken[0] if len(taken) == 1 else torch.cat(taken, dim=1)


class ConvBlock(nn.Module):
    """SingleConv (``depth`` 1) or DoubleConv (``depth`` 2): [B,in,H,W] -> [B,out,H,W],
    residual_auto(x, Conv1x1(out->out, bias)([Conv3x3(no bias, zero pad 1), BN, ReLU] x depth (x))).
    Sub-module indices are the official ``conv.0`` ... ``conv.3`` / ``conv.6``.

    The input may be given as parts [B,c_i,H,W] of a channel concatenation x: the first conv is
    summed over the parts, so x itself (the largest map of a decoder step) is never built.
    """

    def __init__(self, in_channels: int, out_channels: int, depth: int):
        super().__init__()
        layers = []
        for i in range(depth):
            layers += [nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3, padding=1, bias=False),
                       nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]
        self.conv = nn.Sequential(*layers, nn.Conv2d(out_channels, out_channels, 1))

    def forward(self, *parts: torch.Tensor) -> torch.Tensor:
        first, offset, branch = self.conv[0], 0, None
        for part in parts:
            out = F.conv2d(part, first.weight[:, offset:offset + part.shape[1]], padding=1)
            branch = out if branch is None else branch.add_(out)
            offset += part.shape[1]
        branch = self.conv[1:](branch)
        return residual_auto(leading_channels(parts, branch.shape[1]), branch)


class Stage(nn.Module):
    """One configured block (``block_k``): its single ConvBlock lives at ``blocks.0``."""

    def __init__(self, in_channels: int, out_channels: int, depth: int):
        super().__init__()
        self.blocks = nn.Sequential(ConvBlock(in_channels, out_channels, depth))

    def forward(self, *parts: torch.Tensor) -> torch.Tensor:
        return self.blocks[0](*parts)


class Encoder(nn.Module):
    """Five SingleConv stages, all at the (pre-scaled) image resolution (no downsampling):
    image [B,3,H,W] -> (e3 [B,E3,H,W], e4 [B,E4,H,W]), the two maps the decoder uses."""

    def __init__(self, widths: Sequence[int]):
        super().__init__()
        for k, (cin, cout) in enumerate(zip((3, *widths[:-1]), widths)):
            self.add_module(f"block_{k}", Stage(cin, cout, depth=1))

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = self.block_2(self.block_1(self.block_0(image)))
        e3 = self.block_3(x)
        return e3, self.block_4(e3)


class UpBlock(nn.Module):
    """``up_1``: [B,D,h,w] -> [B,D,2h,2w], ConvTranspose2d(k=2, s=2, bias) + 2x bilinear
    (align_corners=True)."""

    def __init__(self, channels: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(channels, channels, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (2 * x.shape[-2], 2 * x.shape[-1])
        return self.up(x) + F.interpolate(x, size=size, mode="bilinear", align_corners=True)


class Decoder(nn.Module):
    """One iteration's guide: V [B,C,h,w], NN(e4) [B,E4,h,w], NN(e3) [B,E3,2h,2w] -> [B,D,2h,2w],
    block_1(cat(up_1(block_0(cat(V, NN(e4)))), NN(e3)))."""

    def __init__(self, in_channels: int, encoder_widths: Sequence[int], width: int):
        super().__init__()
        self.block_0 = Stage(in_channels + encoder_widths[4], width, depth=2)
        self.up_1 = UpBlock(width)
        self.block_1 = Stage(width + encoder_widths[3], width, depth=2)

    def forward(self, value: torch.Tensor, enc_lo: torch.Tensor, enc_hi: torch.Tensor) -> torch.Tensor:
        return self.block_1(self.up_1(self.block_0(value, enc_lo)), enc_hi)


def resize_antialiased(x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """torchvision ``resize(x, size)`` on a tensor (bilinear, antialias=True): identity at the
    same size; float16/bfloat16 computed in float32 and cast back."""
    if tuple(size) == tuple(x.shape[-2:]):
        return x
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    out = F.interpolate(work, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
    return out.to(x.dtype)


class LocalAttender(nn.Module):
    """guide [B,D,2h,2w], value [B,C,h,w] -> [B,C,2h,2w], or that resized (antialiased
    bilinear) to ``output_size`` (see the module docstring).

    ``chunked``: :func:`local_attention` with ``max_elements_per_chunk`` output elements at once
    (default :data:`DEFAULT_CHUNK_ELEMENTS`); a final resize then runs in groups of channels of
    about :data:`RESIZE_GROUP_ELEMENTS` attender outputs, so the full-resolution attender output
    is never held at once. ``chunked=False`` runs the official unchunked order instead.
    """

    def __init__(self, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width, NEIGHBORS, 1)

    def weights(self, guide: torch.Tensor) -> torch.Tensor:
        """Softmax over the 17 neighbours of residual_auto(guide, conv1(guide)): [B,17,2h,2w]."""
        return residual_auto(guide, self.conv1(guide)).softmax(dim=1)

    def forward(self, guide: torch.Tensor, value: torch.Tensor, chunked: bool = True,
                max_elements_per_chunk: Optional[int] = None,
                output_size: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        attn = self.weights(guide)
        b, c, h, w = value.shape
        size = (2 * h, 2 * w) if output_size is None else tuple(output_size)
        if not chunked:
            return resize_antialiased(local_attention_dense(attn, value), size)
        group = max(1, RESIZE_GROUP_ELEMENTS // (b * 4 * h * w))
        if size == (2 * h, 2 * w) or group >= c:
            return resize_antialiased(local_attention(attn, value, max_elements_per_chunk), size)
        out = value.new_empty(b, c, *size)
        for start in range(0, c, group):
            channels = slice(start, start + group)
            out[:, channels] = resize_antialiased(local_attention(attn, value[:, channels], max_elements_per_chunk),
                                                  size)
        return out


def local_attention_dense(attn: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """The official order: stack the 17 shifted padded maps [B,C,17,h,1,w,1], multiply by
    attn [B,1,17,h,2,w,2], sum over the 17 axis -> [B,C,2h,2w]. Materialises 17 x the output."""
    b, c, h, w = value.shape
    padded = F.pad(value, (PAD,) * 4, mode="replicate")
    stacked = torch.stack([padded[:, :, PAD + dy:PAD + dy + h, PAD + dx:PAD + dx + w] for dy, dx in OFFSETS], 2)
    product = stacked.view(b, c, NEIGHBORS, h, 1, w, 1) * attn.reshape(b, 1, NEIGHBORS, h, 2, w, 2)
    return product.sum(2).view(b, c, 2 * h, 2 * w)


def _padded_rows(value: torch.Tensor, start: int, stop: int):
    """Low-res rows start-2 .. stop+1 of the replicate-padded value [B,C,stop-start+4,w+4], with
    the source row [r+4] and column [w+4] indices it was gathered from."""
    h, w = value.shape[-2:]
    rows = torch.arange(start - PAD, stop + PAD, device=value.device).clamp_(0, h - 1)
    cols = torch.arange(-PAD, w + PAD, device=value.device).clamp_(0, w - 1)
    return value.index_select(2, rows).index_select(3, cols), rows, cols


def _shifted(padded: torch.Tensor, offset: Tuple[int, int]) -> torch.Tensor:
    """Neighbour ``offset`` of every cell of a padded chunk, as [B,C,1,1,r,w] (broadcasts over
    the 2x2 sub-pixels)."""
    (dy, dx), r, w = offset, padded.shape[2] - 2 * PAD, padded.shape[3] - 2 * PAD
    return padded[:, :, None, None, PAD + dy:PAD + dy + r, PAD + dx:PAD + dx + w]


def _accurate(x: torch.Tensor) -> torch.Tensor:
    """``x`` contiguous, in float32 when it is float16/bfloat16 (the 17-term sums accumulate
    there; the official product-then-sum also rounds only once)."""
    return x.to(torch.promote_types(x.dtype, torch.float32), memory_format=torch.contiguous_format)


def _cells(x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Output rows 2*start .. 2*stop-1 of x [B,K,2h,2w] as the view [B,K,2,2,r,w] (sub-pixel
    (i, j) of cell (y, x) at [:, :, i, j, y, x])."""
    b, k, _, w2 = x.shape
    return x[:, :, 2 * start:2 * stop].view(b, k, stop - start, 2, w2 // 2, 2).permute(0, 1, 3, 5, 2, 4)


class _LocalAttention(torch.autograd.Function):
    """Chunked forward; the backward regathers each chunk's padded values. Per chunk, with dO
    the output gradient: dA_d = sum_c dO * shift_d(Vp), dVp[shift_d] += sum_{i,j} A_d dO, and dV
    is dVp folded back onto the rows / columns it was replicated from. Chunks are worked on in
    the sub-pixel-major layout [B,K,2,2,r,w], so every elementwise op runs along contiguous rows;
    half-precision chunks are worked on in float32."""

    @staticmethod
    def forward(ctx, attn, value, rows_per_chunk):
        ctx.save_for_backward(attn, value)
        ctx.rows_per_chunk = rows_per_chunk
        b, c, h, w = value.shape
        out = value.new_empty(b, c, 2 * h, 2 * w)
        for start in range(0, h, rows_per_chunk):
            stop = min(h, start + rows_per_chunk)
            padded, _, _ = _padded_rows(value, start, stop)
            padded, weights = _accurate(padded), _accurate(_cells(attn, start, stop))
            acc = _shifted(padded, OFFSETS[0]) * weights[:, :1]
            for d in range(1, NEIGHBORS):
                acc.addcmul_(_shifted(padded, OFFSETS[d]), weights[:, d:d + 1])
            _cells(out, start, stop).copy_(acc)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        attn, value = ctx.saved_tensors
        need_attn, need_value = ctx.needs_input_grad[:2]
        grad_out = grad_out.contiguous()
        h, w = value.shape[-2:]
        d_attn = torch.empty_like(attn) if need_attn else None
        d_value = torch.zeros_like(_accurate(value)) if need_value else None
        for start in range(0, h, ctx.rows_per_chunk):
            stop = min(h, start + ctx.rows_per_chunk)
            padded, rows, cols = _padded_rows(value, start, stop)
            padded, grad, weights = _accurate(padded), _accurate(_cells(grad_out, start, stop)), \
                _accurate(_cells(attn, start, stop))
            d_weights = torch.empty_like(weights) if need_attn else None
            d_padded = torch.zeros_like(padded) if need_value else None
            for d, offset in enumerate(OFFSETS):
                shifted = _shifted(padded, offset)
                if need_attn:
                    torch.sum(grad * shifted, dim=1, out=d_weights[:, d])
                if need_value:
                    _shifted(d_padded, offset)[:, :, 0, 0] += (grad * weights[:, d:d + 1]).sum((2, 3))
            if need_attn:
                _cells(d_attn, start, stop).copy_(d_weights)
            if need_value:
                folded = padded.new_zeros(*padded.shape[:3], w).index_add_(3, cols, d_padded)
                d_value.index_add_(2, rows, folded)
        return d_attn, None if d_value is None else d_value.to(value.dtype), None


def local_attention(attn: torch.Tensor, value: torch.Tensor,
                    max_elements_per_chunk: Optional[int] = None) -> torch.Tensor:
    """attn [B,17,2h,2w], value [B,C,h,w] -> [B,C,2h,2w], in chunks of low-resolution rows of
    about ``max_elements_per_chunk`` output elements (default :data:`DEFAULT_CHUNK_ELEMENTS`),
    forward and backward. Same numbers as :func:`local_attention_dense` up to summation order."""
    b, c, h, w = value.shape
    if attn.shape != (b, NEIGHBORS, 2 * h, 2 * w):
        raise ValueError(f"attn must have shape {(b, NEIGHBORS, 2 * h, 2 * w)} for value of shape "
                         f"{tuple(value.shape)}, got {tuple(attn.shape)}")
    budget = DEFAULT_CHUNK_ELEMENTS if max_elements_per_chunk is None else max_elements_per_chunk
    if budget < 1:
        raise ValueError(f"max_elements_per_chunk must be a positive int, got {max_elements_per_chunk}")
    rows = max(1, budget // (b * c * 4 * w))
    return _LocalAttention.apply(attn.contiguous(), value, rows)
