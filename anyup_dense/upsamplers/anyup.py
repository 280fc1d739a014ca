"""AnyUp (Wimmer et al., ICLR 2026): a feature-agnostic upsampler for any backbone and any C.

Numerically the official model (github.com/wimmerth/anyup @ 351807a) on the official
weights; parameter names are the official ones, so the released state_dicts load strictly.
The only change is the attention: a gathered local window (``anyup_dense.ops``) instead
of a dense masked attention, with identical results.

Forward, for features [B,C,h,w] and an ImageNet-normalised image [B,3,H,W]:
  1. E = positional_modulation(image_encoder(image))            [B,D,H,W]
  2. Q = conv3x3(avg_pool(query_encoder(E), (Ho,Wo)))            [B,D,Ho,Wo]
  3. K = aggregation([avg_pool(key_encoder(E), (h,w)),
                      key_features_encoder(l2norm(features))])  [B,D,h,w]
  4. out = window_attention(RMSNorm(Q) W_q, RMSNorm(K) W_k, features)  [B,C,Ho,Wo]
The encoders run at full image resolution before pooling (GroupNorm over the whole map).
"""
import os
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from anyup_dense.ops.chunking import check_chunk_size
from anyup_dense.ops.window_geometry import check_window_ratio
from anyup_dense.checkpoints import Release, load_state_dict_strict, load_weights, releases
from anyup_dense.registry import UPSAMPLERS
from anyup_dense.upsamplers.anyup_layers import FeatureAgnosticLayer, PositionalModulation, ResBlock
from anyup_dense.upsamplers.attention_backend import window_attention
from anyup_dense.upsamplers.base import Upsampler, keep_as_buffers
from anyup_dense.upsamplers.precision import forward_in_float32
from anyup_dense.upsamplers.recompute import recompute_in_backward

_URL = "https://github.com/wimmerth/anyup/releases/download/"
RELEASES = releases(
    Release("anyup_paper", _URL + "checkpoint/anyup_paper.pth", licence="CC-BY-4.0",
            trained_on="DINOv2 ViT-S/14 features (the paper's model); used for any backbone"),
    Release("anyup_multi_backbone", _URL + "checkpoint_v2/anyup_multi_backbone.pth", licence="CC-BY-4.0",
            trained_on="DINOv2-S/14, DINOv2-S/14-reg4, CLIP-B/16, SigLIP-B/16 and ViT-B/16 features"),
)


def _encoder(first: nn.Module, first_width: int, width: int) -> nn.Sequential:
    return nn.Sequential(first, ResBlock(first_width, width), ResBlock(width, width))


def _conv(cin: int, cout: int, kernel_size: int, padding_mode: str) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2, padding_mode=padding_mode, bias=False)


class WindowCrossAttention(nn.Module):
    """RMS-normed, projected q/k; head-averaged window softmax applied to the raw values.

    ``attention`` is an ``nn.MultiheadAttention`` only to hold the official parameters
    (``in_proj_weight`` rows [0:D] = W_q, [D:2D] = W_k); its V rows and ``out_proj`` do not
    affect the output. ``out_proj`` is kept as buffers for strict loading: never trainable,
    so DDP (``find_unused_parameters=False``) and optimizers do not see it.
    """

    def __init__(self, dim: int, num_heads: int, window_ratio: float):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"qk_dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.window_ratio = check_window_ratio(window_ratio)
        self.norm_q = nn.RMSNorm(dim)
        self.norm_k = nn.RMSNorm(dim)
        self.attention = nn.MultiheadAttention(dim, num_heads, bias=True, batch_first=True)
        keep_as_buffers(self.attention, ("out_proj.weight", "out_proj.bias"))

    def _project(self, x: torch.Tensor, norm: nn.RMSNorm, part: int) -> torch.Tensor:
        """[B, D, H, W] -> per-head [B, heads, H, W, D/heads]."""
        b, d, h, w = x.shape
        weight = self.attention.in_proj_weight[part * d:(part + 1) * d]
        bias = self.attention.in_proj_bias[part * d:(part + 1) * d]
        x = F.linear(norm(x.permute(0, 2, 3, 1)), weight, bias)
        return x.view(b, h, w, self.num_heads, d // self.num_heads).permute(0, 3, 1, 2, 4)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, backend: str = "auto",
                max_pixels_per_chunk: Optional[int] = None) -> torch.Tensor:
        """queries [B,D,Ho,Wo], keys [B,D,h,w], values [B,C,h,w] -> [B,C,Ho,Wo]."""
        q = self._project(queries, self.norm_q, 0)
        k = self._project(keys, self.norm_k, 1)
        return window_attention(q, k, values, self.window_ratio, backend=backend,
                                max_pixels_per_chunk=max_pixels_per_chunk)


class CrossDecoder(nn.Module):
    """Official ``cross_decode``: 3x3 zero-padded conv on the pooled queries, then attention."""

    def __init__(self, dim: int, num_heads: int, window_ratio: float):
        super().__init__()
        self.conv2d = nn.Conv2d(dim, dim, 3, padding=1, bias=False)
        self.cross_attn = WindowCrossAttention(dim, num_heads, window_ratio)


class AnyUp(Upsampler):
    """AnyUp upsampler; the defaults are the released architecture (878,080 parameters).

    Args:
        qk_dim: width D of the query/key codes.
        num_heads: attention heads (probabilities are averaged over heads).
        window_ratio: half-width of the attention window in normalised coordinates
            (0 = full attention).
        kernel_size: kernel of the image encoder's first conv (reflect padding).
        kernel_size_lfu: kernel of the feature-agnostic layer's basis filters.
        lfu_dim: output width of the feature-agnostic layer (default ``qk_dim``).
        input_dim: guidance image channels.
        backend: window-attention backend ("auto", "torch", "triton", "reference").
        max_pixels_per_chunk: bound on output pixels attended at once (torch backend).
        checkpoint_encoders: when training through AnyUp, recompute the full-resolution
            encoders in the backward pass instead of keeping their activations (gradient
            checkpointing): same gradients, a fraction of the memory, about 1.3x the time.
        check_finite: reject NaN/Inf inputs.
    """

    def __init__(self, qk_dim: int = 128, num_heads: int = 4, window_ratio: float = 0.1, kernel_size: int = 1,
                 kernel_size_lfu: int = 5, lfu_dim: Optional[int] = None, input_dim: int = 3,
                 backend: str = "auto", max_pixels_per_chunk: Optional[int] = None,
                 checkpoint_encoders: bool = False, check_finite: bool = False):
        super().__init__(check_finite=check_finite)
        lfu_dim = qk_dim if lfu_dim is None else lfu_dim
        self.guidance_channels = input_dim
        self.backend = backend
        self.max_pixels_per_chunk = check_chunk_size(max_pixels_per_chunk)
        self.checkpoint_encoders = checkpoint_encoders
        self.image_encoder = _encoder(_conv(input_dim, qk_dim, kernel_size, "reflect"), qk_dim, qk_dim)
        self.key_encoder = _encoder(_conv(qk_dim, qk_dim, 1, "reflect"), qk_dim, qk_dim)
        self.query_encoder = _encoder(_conv(qk_dim, qk_dim, 1, "reflect"), qk_dim, qk_dim)
        self.key_features_encoder = _encoder(FeatureAgnosticLayer(lfu_dim, kernel_size_lfu), lfu_dim, qk_dim)
        self.cross_decode = CrossDecoder(qk_dim, num_heads, window_ratio)
        self.aggregation = _encoder(_conv(2 * qk_dim, qk_dim, 3, "reflect"), qk_dim, qk_dim)
        self.rope = PositionalModulation(qk_dim)

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """[B,3,H,W] -> positionally modulated image code [B,D,H,W].

        The full-resolution encoders dominate AnyUp's cost; in channels-last layout their
        1x1 convolutions and GroupNorms run about 1.4x faster on CPU (same math).
        """
        return self.rope(self.image_encoder(image.contiguous(memory_format=torch.channels_last)))

    def encode_keys(self, image_code: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Keys [B,D,h,w] from the image code and the (L2-normalised) features."""
        pooled = F.adaptive_avg_pool2d(self.key_encoder(image_code), features.shape[-2:])
        # float32 whatever the model's precision: the LFU's softmax outputs (about 1/M each)
        # and the GroupNorm after it lose their signal in bf16/fp16 (20% / 9% output error)
        feature_code = forward_in_float32(self.key_features_encoder, F.normalize(features, dim=1))
        return self.aggregation(torch.cat([pooled, feature_code.to(pooled.dtype)], dim=1))

    def encode_queries(self, image_code: torch.Tensor, output_size: Tuple[int, int]) -> torch.Tensor:
        """Queries [B,D,Ho,Wo] (before RMSNorm) from the image code."""
        return self.cross_decode.conv2d(F.adaptive_avg_pool2d(self.query_encoder(image_code), output_size))

    def _encode(self, encoder, *inputs) -> torch.Tensor:
        """``encoder(*inputs)``, recomputed in backward when ``checkpoint_encoders`` is set."""
        return recompute_in_backward(encoder, *inputs, module=self, enabled=self.checkpoint_encoders)

    def upsample(self, features: torch.Tensor, image: torch.Tensor, output_size: Tuple[int, int]) -> torch.Tensor:
        image_code = self._encode(self.encode_image, image)
        queries = self._encode(self.encode_queries, image_code, output_size)
        keys = self._encode(self.encode_keys, image_code, features)
        del image_code
        return self.cross_decode.cross_attn(queries, keys, features, backend=self.backend,
                                            max_pixels_per_chunk=self.max_pixels_per_chunk)


@UPSAMPLERS.register("anyup")
def build_anyup(pretrained: Union[None, bool, str, os.PathLike] = None, progress: bool = True,
                **kwargs) -> AnyUp:
    """AnyUp with optional weights: ``"anyup_paper"`` (DINOv2 ViT-S/14, the paper's model;
    also ``True``), ``"anyup_multi_backbone"``, a URL (incl. ``file://``), a local path
    (``str`` or ``pathlib.Path``), or ``None``/``False`` (random).

    Checkpoints are plain official state_dicts; any missing, unexpected or mis-shaped key
    raises :class:`~anyup_dense.checkpoints.CheckpointMismatchError` listing them.
    """
    model = AnyUp(**kwargs)
    if pretrained is not None and pretrained is not False:
        state_dict = load_weights(pretrained, RELEASES, progress=progress)
        load_state_dict_strict(model, state_dict, source=f"AnyUp checkpoint {pretrained!r}")
    return model.eval()
