"""NAF (Chambon et al., "NAF: Zero-Shot Feature Upsampling via Neighborhood Attention
Filtering", arXiv 2511.18452): one checkpoint for every backbone, attention weights from the
image only.

Numerically the official model (github.com/valeoai/NAF @ ad4e24d, Apache-2.0) on the official
weights, in plain PyTorch: the attention is :mod:`anyup_dense.ops.neighborhood_attention_dilated`
(NATTEN's rule, no NATTEN; CPU, float64, chunked forward and backward). Parameter names are the
official ones, so ``naf_release.pth`` loads strictly. Licences: the repository is Apache-2.0;
its RoPE file (``src/layers/rope.py``, copied from DINOv3) carries Meta's header placing it
under the DINOv3 License Agreement. :class:`~anyup_dense.upsamplers.naf_layers.AxialRoPE` is
written from a description of the computation, not from that file.

Forward, for features [B,C,h,w], an ImageNet-normalised image [B,3,H,W] and output (Ho, Wo):
  1. if H > 4 Ho or W > 4 Wo: bilinear resize of the image to
     (min(H, 4 Ho, 4 Wo), min(W, 4 Wo, 4 Ho))  (the official cap uses both axes);
  2. Q = RoPE(avg_pool(concat[1x1 branch, 3x3 branch](image), (Ho, Wo)))      [B,dim,Ho,Wo];
  3. K = avg_pool(Q, (h, w))  (pooled from the *rotated* queries)             [B,dim,h,w];
  4. per head (dim / heads_attn q/k channels, C / heads_attn value channels): dilated k x k
     neighbourhood attention, dilation (Ho // h, Wo // w), from Q to K and the features, both
     nearest-exact enlarged to (Ho, Wo); scores scaled by (dim // heads_attn) ** -0.5.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from anyup_dense.ops.neighborhood_attention_dilated import cross_scale_neighborhood_attention
from anyup_dense.checkpoints import Release, load_state_dict_strict, load_weights, releases
from anyup_dense.registry import UPSAMPLERS
from anyup_dense.upsamplers.base import Upsampler
from anyup_dense.upsamplers.naf_layers import GROUPS, ImageEncoder

RELEASES = releases(
    Release("naf_release", "https://github.com/valeoai/NAF/releases/download/model/naf_release.pth",
            licence="Apache-2.0",
            trained_on="feature-agnostic (attention weights from the image only); one file for every backbone"),
)

PRE_RESIZE_FACTOR = 4


def guidance_size(image_hw: Tuple[int, int], output_size: Tuple[int, int]) -> Tuple[int, int]:
    """Size the image is encoded at: itself, unless a side exceeds 4x the output (then both
    sides are capped by 4x the *smaller* output side, as the official code does)."""
    (h, w), (ho, wo) = image_hw, output_size
    cap = PRE_RESIZE_FACTOR
    if h > cap * ho or w > cap * wo:
        return min(h, cap * ho, cap * wo), min(w, cap * wo, cap * ho)
    return h, w


class NAF(Upsampler):
    """NAF upsampler; the defaults are the released architecture (662,528 parameters + the
    16-value ``periods`` buffer, 37 state_dict keys).

    Args (official names):
        dim: width of the image encoding (queries/keys); each conv branch has dim / 2 channels.
        heads_attn: attention heads; the feature channel count C must be divisible by it.
        heads_rope: RoPE groups (independent of ``heads_attn``).
        kernel_size: odd neighbourhood size k (k x k window).
        use_encoder: must be True (the official False path cannot satisfy its own asserts).
        rope_base: initialises the ``periods`` buffer (a loaded checkpoint's values win).
        rope_rescale: training-mode coordinate rescaling range; no effect in eval mode.
        img_layers: EncBlocks per branch after the stem conv.
    Args (ours):
        max_pixels_per_chunk: bound on the output pixels attended at once (default: chunks of
            about 2**22 buffer entries); the backward pass recomputes per chunk too.
        checkpoint_encoder: when training through NAF, recompute each full-resolution conv /
            EncBlock in the backward pass instead of keeping its activations (same gradients).
        check_finite: reject NaN/Inf inputs.
    """

    def __init__(self, dim: int = 256, heads_attn: int = 4, heads_rope: int = 4, kernel_size: int = 9,
                 use_encoder: bool = True, rope_base: float = 100.0, rope_rescale: float = 2.0, img_layers: int = 2,
                 max_pixels_per_chunk: Optional[int] = None, checkpoint_encoder: bool = False,
                 check_finite: bool = False):
        super().__init__(check_finite=check_finite)
        if not use_encoder:
            raise ValueError("use_encoder=False is not supported: the official model then needs dim == 3, "
                             "which its own RoPE constraint (dim divisible by 4 * heads_rope) rules out")
        if dim % (2 * GROUPS):
            raise ValueError(f"dim must be divisible by {2 * GROUPS} (GroupNorm with {GROUPS} groups over dim/2 "
                             f"channels), got {dim}")
        if dim % (4 * heads_rope):
            raise ValueError(f"dim ({dim}) must be divisible by 4 * heads_rope ({4 * heads_rope})")
        if dim % heads_attn:
            raise ValueError(f"dim ({dim}) must be divisible by heads_attn ({heads_attn})")
        if kernel_size < 3 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 3, got {kernel_size}")
        if img_layers < 0:
            raise ValueError(f"img_layers must be >= 0, got {img_layers}")
        self.dim, self.heads_attn, self.kernel_size = dim, heads_attn, kernel_size
        self.max_pixels_per_chunk = max_pixels_per_chunk
        self.image_encoder = ImageEncoder(dim, heads_rope, rope_base, rope_rescale, img_layers)
        self.image_encoder.checkpoint_layers = checkpoint_encoder

    def check_sizes(self, features: torch.Tensor, output_size: Tuple[int, int]) -> None:
        """ValueError for what the architecture cannot take (NATTEN raises on the same cases)."""
        c, h, w = features.shape[1:]
        if c % self.heads_attn:
            raise ValueError(f"features have {c} channels, which NAF cannot split into heads_attn="
                             f"{self.heads_attn} equal value heads; C must be divisible by {self.heads_attn}")
        for axis, out_len, in_len in (("height", output_size[0], h), ("width", output_size[1], w)):
            if out_len < in_len:
                raise ValueError(f"output_size {tuple(output_size)} is smaller than the features ({h}x{w}) in "
                                 f"{axis}; NAF only upsamples")
            if self.kernel_size * (out_len // in_len) > out_len:
                raise ValueError(f"output_size {tuple(output_size)} is not reachable from {h}x{w} features: the "
                                 f"output {axis} {out_len} must be >= kernel_size * ({out_len} // {in_len}) = "
                                 f"{self.kernel_size * (out_len // in_len)} (NATTEN's dilated-window limit)")

    def queries(self, image: torch.Tensor, output_size: Tuple[int, int]) -> torch.Tensor:
        """Q [B, dim, Ho, Wo] after the pre-resize, the encoder, the pooling and the RoPE."""
        size = guidance_size(image.shape[-2:], output_size)
        if size != tuple(image.shape[-2:]):
            image = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
        return self.image_encoder(image.contiguous(memory_format=torch.channels_last), output_size)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """[B, n*d, H, W] -> [B, n, H, W, d] view (head-major channels)."""
        b, c, h, w = x.shape
        return x.view(b, self.heads_attn, c // self.heads_attn, h, w).permute(0, 1, 3, 4, 2)

    def upsample(self, features: torch.Tensor, image: torch.Tensor, output_size: Tuple[int, int]) -> torch.Tensor:
        self.check_sizes(features, output_size)
        queries = self.queries(image, output_size)
        keys = F.adaptive_avg_pool2d(queries, features.shape[-2:])
        out = cross_scale_neighborhood_attention(
            self._heads(queries), self._heads(keys), self._heads(features), self.kernel_size,
            scale=(self.dim // self.heads_attn) ** -0.5, max_pixels_per_chunk=self.max_pixels_per_chunk)
        b, _, ho, wo, _ = out.shape
        return out.permute(0, 1, 4, 2, 3).reshape(b, features.shape[1], ho, wo)


@UPSAMPLERS.register("naf")
def build_naf(pretrained: Optional[str] = None, progress: bool = True, **kwargs) -> NAF:
    """NAF with optional weights: ``"naf_release"`` (the official checkpoint), a URL (incl.
    ``file://``), a local path, or ``None`` (random). Keyword arguments are :class:`NAF`'s
    (the official constructor names: dim, heads_attn, heads_rope, kernel_size, rope_base,
    rope_rescale, img_layers).

    The checkpoint is the official flat state_dict (37 keys for the release, including the
    buffer ``image_encoder.rope.periods``); any missing, unexpected or mis-shaped key raises
    :class:`~anyup_dense.checkpoints.CheckpointMismatchError` listing them.
    """
    model = NAF(**kwargs)
    if pretrained is not None:
        state_dict = load_weights(pretrained, RELEASES, progress=progress)
        load_state_dict_strict(model, state_dict, source=f"NAF checkpoint {pretrained!r}")
    return model.eval()
