"""JAFAR (Couairon et al., NeurIPS 2025): attention from every output pixel to every feature pixel.

Numerically the official model (github.com/PaulCouairon/JAFAR @ 94d4d54, Apache-2.0) on the
official weights; parameter names are the official ones, so the released checkpoints load
strictly. Differences: the attention runs in chunks of output pixels (same numbers, memory
bounded by the chunk), the RoPE grid follows the input's dtype and device (official: float32
on CUDA only), and the discarded value path of ``nn.MultiheadAttention`` is not computed.

Forward, for features [B,C,h,w] and a normalised image [B,3,H,W] (the tensor the backbone saw):
  1. E = rope(image_encoder(image))                                     [B,Q,H,W]
     rope: E cos(a) + rotate_half(E) sin(a), a = y F[0] + x F[1] on linspace(0, 1) pixel
     coordinates (not a rotation: the two halves of a pair use different angles)
  2. queries = conv3x3_zero_pad(GN(avg_pool(query_encoder(E), (Ho,Wo))))  [B,Q,Ho,Wo]
  3. keys = gamma(c) GN(avg_pool(key_encoder(E), (h,w))) + beta(c),
     c = key_features_encoder(l2norm(features))                         [B,Q,h,w]
  4. A = mean over heads of softmax(RMSNorm(q) W_q + b_q, RMSNorm(k) W_k + b_k)  [B,Ho*Wo,h*w]
  5. out = A @ features (the raw features are the values)                [B,C,Ho,Wo]
"""
import collections
import math
import typing
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from anyup_dense.checkpoints import Release, load_state_dict_strict, load_weights, releases
from anyup_dense.ops.chunking import check_chunk_size
from anyup_dense.registry import UPSAMPLERS
from anyup_dense.upsamplers.anyup_layers import PositionalModulation
from anyup_dense.upsamplers.base import Upsampler, keep_as_buffers
from anyup_dense.upsamplers.jafar_layers import GROUPS, SFT, encoder, global_attention
from anyup_dense.upsamplers.recompute import recompute_in_backward

_RELEASE_URL = "https://github.com/PaulCouairon/JAFAR/releases/download/Weights/{}.pth"
# The README labels "ViT-B-16" and "ViT-B-16-DINO" are swapped relative to their files: the
# names here follow the files, which upstream's later hubconf also maps this way
# (dino_b -> vit_base_patch16_224.dino, vit_b -> vit_base_patch16_224): the ".dino" file is
# DINO ViT-B/16, the other supervised ViT-B/16. The README at 94d4d54 lists the first seven;
# the DINOv3 and RADIO v2.5 files were announced later (names from that hubconf and from
# napari-convpaint, which loads the DINOv3-S+ and DINOv2-S-reg4 files strictly).
# Each file is a training dict ({"jafar": state_dict, "optimizer_jafar", "epoch", "cfg"}).


def _release(name: str, trained_on: str, *aliases: str) -> Release:
    """The JAFAR checkpoint for the backbone named ``name`` (timm's name, or RADIO's)."""
    return Release(name, _RELEASE_URL.format(name), layout="training_dict", weights_key="jafar",
                   backbones=(name, *aliases), trained_on=trained_on, licence="Apache-2.0")


# One checkpoint per backbone; the first is the default (pretrained=True).
RELEASES = releases(
    _release("vit_small_patch14_dinov2.lvd142m", "DINOv2 ViT-S/14, C=384"),
    _release("vit_base_patch14_dinov2.lvd142m", "DINOv2 ViT-B/14, C=768"),
    _release("vit_small_patch14_reg4_dinov2", "DINOv2 ViT-S/14 with 4 registers, C=384",
             "vit_small_patch14_reg4_dinov2.lvd142m"),
    _release("vit_base_patch16_224.dino", 'DINO ViT-B/16, C=768 (README label "ViT-B-16")'),
    _release("vit_base_patch16_224", 'supervised ViT-B/16, C=768 (README label "ViT-B-16-DINO")'),
    _release("vit_base_patch16_clip_384", "OpenAI CLIP ViT-B/16 @384, C=768"),
    _release("vit_base_patch16_siglip_512.v2_webli", "SigLIP2 ViT-B/16 @512, C=768"),
    _release("vit_small_patch16_dinov3.lvd1689m", "DINOv3 ViT-S/16, C=384"),
    _release("vit_small_plus_patch16_dinov3.lvd1689m", "DINOv3 ViT-S+/16, C=384"),
    _release("vit_base_patch16_dinov3.lvd1689m", "DINOv3 ViT-B/16, C=768"),
    _release("vit_large_patch16_dinov3.lvd1689m", "DINOv3 ViT-L/16, C=1024"),
    _release("radio_v2.5-b", "RADIO v2.5-B, C=768 (image in [0, 1])"),
    _release("radio_v2.5-l", "RADIO v2.5-L, C=1024"),
    _release("radio_v2.5-h", "RADIO v2.5-H, C=1280"),
)

BACKENDS = ("chunked", "dense")


class OmegaConfStandIn:
    """Inert stand-in for the omegaconf classes in the pickled Hydra ``cfg`` of the official
    training checkpoints: unpickling only stores the pickled state (``self.state``); no
    omegaconf code is imported or run."""

    def __setstate__(self, state) -> None:
        self.state = state


# The globals a pickled OmegaConf config references (checked with pickletools on omegaconf
# 2.3 DictConfig/ListConfig pickles): its container, metadata and value-node classes, mapped
# to the stand-in, plus the plain types its metadata names. Anything else is refused.
_OMEGACONF_CLASSES = ("dictconfig.DictConfig", "listconfig.ListConfig", "base.ContainerMetadata", "base.Metadata",
                      "nodes.AnyNode", "nodes.StringNode", "nodes.IntegerNode", "nodes.FloatNode",
                      "nodes.BooleanNode", "nodes.BytesNode")
CHECKPOINT_SAFE_GLOBALS = (
    *[(OmegaConfStandIn, f"omegaconf.{name}") for name in _OMEGACONF_CLASSES],
    dict, list, int, float, str, bool, collections.defaultdict, (typing.Any, "typing.Any"),
)


class CrossAttention(nn.Module):
    """Official ``cross_decode.cross_attn``: RMSNorm'd queries/keys, the q/k in-projections of
    ``attention`` (an ``nn.MultiheadAttention`` that only holds the official parameters), and
    the head-averaged softmax applied to the raw values.

    ``norm_v``, the v projection and ``out_proj`` never affect the official output; they are
    kept as buffers (strict loading, never trainable). With ``v_dim == qk_dim`` torch packs
    the q/k/v projections into one ``in_proj_weight`` [3Q, Q] (rows q, k, v).
    """

    def __init__(self, qk_dim: int, v_dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.norm_q = nn.RMSNorm(qk_dim)
        self.norm_k = nn.RMSNorm(qk_dim)
        self.norm_v = nn.RMSNorm(v_dim)
        self.attention = nn.MultiheadAttention(qk_dim, num_heads, vdim=v_dim, batch_first=True)
        packed = self.attention._qkv_same_embed_dim
        keep_as_buffers(self.attention, ("out_proj.weight", "out_proj.bias") + (() if packed else ("v_proj_weight",)))
        keep_as_buffers(self.norm_v, ("weight",))

    def project(self, x: torch.Tensor, part: int) -> torch.Tensor:
        """Queries (``part`` 0) or keys (1) [B,Q,h,w] -> per-head [B,nH,h*w,Q/nH]; queries are
        scaled by sqrt(1/head_dim) as torch does before the product."""
        q_dim = x.shape[1]
        attention = self.attention
        if attention._qkv_same_embed_dim:
            weight = attention.in_proj_weight[part * q_dim:(part + 1) * q_dim]
        else:
            weight = (attention.q_proj_weight, attention.k_proj_weight)[part]
        bias = attention.in_proj_bias[part * q_dim:(part + 1) * q_dim]
        tokens = F.linear((self.norm_q, self.norm_k)[part](x.flatten(2).transpose(1, 2)), weight, bias)
        head_dim = q_dim // self.num_heads
        heads = tokens.unflatten(-1, (self.num_heads, head_dim)).transpose(1, 2)
        return heads * math.sqrt(1.0 / head_dim) if part == 0 else heads

    def attention_weights(self, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Head-averaged probabilities [B, Ho*Wo, h*w] (dense; for inspection)."""
        return (self.project(queries, 0) @ self.project(keys, 1).transpose(-1, -2)).softmax(dim=-1).mean(dim=1)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                max_pixels_per_chunk: Optional[int] = None, dense: bool = False) -> torch.Tensor:
        """queries [B,Q,Ho,Wo], keys [B,Q,h,w], values [B,C,h,w] -> [B,C,Ho,Wo]."""
        out = global_attention(self.project(queries, 0), self.project(keys, 1), values.flatten(2),
                               max_pixels_per_chunk=max_pixels_per_chunk, dense=dense)
        return out.view(*values.shape[:2], *queries.shape[2:])


class CrossDecode(nn.Module):
    """Official ``cross_decode``: the attention and the queries' 3x3 conv (zero padding)."""

    def __init__(self, qk_dim: int, v_dim: int, num_heads: int):
        super().__init__()
        self.cross_attn = CrossAttention(qk_dim, v_dim, num_heads)
        self.conv2d = nn.Conv2d(qk_dim, qk_dim, 3, padding=1, bias=False)


class JAFAR(Upsampler):
    """JAFAR upsampler; the defaults are the released architecture at C=384 (65 tensors,
    529,792 + 257 C = 628,480 values in the state_dict).

    Args (the official constructor's names):
        input_dim: guidance image channels (3).
        qk_dim: width Q of queries and keys (128 released); a multiple of 8 and of num_heads.
        v_dim: feature channels C (the backbone width); one checkpoint per width.
        feature_dim: accepted and ignored, as in the official code.
        kernel_size: odd kernel of the image encoder's first conv (reflect padding; 1 released).
        num_heads: attention heads (4 released); their probabilities are averaged.
    The image must be normalised as the backbone's input was (the checkpoints were trained
    so): ImageNet statistics for DINO/DINOv2/DINOv3, CLIP's for CLIP, 0.5/0.5 for SigLIP,
    none (values in [0, 1]) for RADIO.
    Options:
        backend: ``"chunked"`` (default): the attention runs over chunks of output pixels in
            forward and backward, so memory is bounded by the chunk; ``"dense"``: the
            official formula in one piece (logits [B, heads, Ho*Wo, h*w]), for comparison.
        max_pixels_per_chunk: output pixels per chunk (``None``: about 2**22 logits per chunk).
        checkpoint_encoders: when training through JAFAR, recompute the full-resolution
            encoders in the backward pass instead of storing their activations (same gradients).
        check_finite: reject NaN/Inf inputs.
    """

    min_feature_size = 1  # any h, w >= 1: pooling and attention need no neighbours

    def __init__(self, input_dim: int = 3, qk_dim: int = 128, v_dim: int = 384, feature_dim: Optional[int] = None,
                 kernel_size: int = 1, num_heads: int = 4, backend: str = "chunked",
                 max_pixels_per_chunk: Optional[int] = None, checkpoint_encoders: bool = False,
                 check_finite: bool = False):
        super().__init__(check_finite=check_finite)
        _check_config(qk_dim, num_heads, kernel_size, backend)
        del feature_dim  # official signature; unused there too
        self.guidance_channels = input_dim
        self.expected_channels = v_dim
        self.kernel_size = kernel_size
        self.backend = backend
        self.max_pixels_per_chunk = check_chunk_size(max_pixels_per_chunk)
        self.checkpoint_encoders = checkpoint_encoders
        self.image_encoder = encoder(input_dim, qk_dim, kernel_size)
        self.key_encoder = encoder(qk_dim, qk_dim)
        self.query_encoder = encoder(qk_dim, qk_dim)
        self.norm = nn.GroupNorm(GROUPS, qk_dim, affine=False)
        self.key_features_encoder = encoder(v_dim, qk_dim)
        self.cross_decode = CrossDecode(qk_dim, v_dim, num_heads)
        self.sft_key = SFT(qk_dim)
        self.rope = PositionalModulation(qk_dim)

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """[B,3,H,W] -> positionally modulated image code [B,Q,H,W] (grid in the image's dtype).

        The full-resolution encoders dominate the cost besides the attention; in channels-last
        layout they run about 1.3x faster on CPU (same math).
        """
        return self.rope(self.image_encoder(image.contiguous(memory_format=torch.channels_last)))

    def encode_queries(self, image_code: torch.Tensor, output_size: Tuple[int, int]) -> torch.Tensor:
        """Queries [B,Q,Ho,Wo] (before RMSNorm) from the image code."""
        pooled = F.adaptive_avg_pool2d(self.query_encoder(image_code), output_size)
        return self.cross_decode.conv2d(self.norm(pooled))

    def encode_keys(self, image_code: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Keys [B,Q,h,w] (before RMSNorm): pooled image keys modulated by the features."""
        pooled = F.adaptive_avg_pool2d(self.key_encoder(image_code), features.shape[-2:])
        return self.sft_key(pooled, self.key_features_encoder(F.normalize(features, dim=1)))

    def _encode(self, encoder, *inputs) -> torch.Tensor:
        """``encoder(*inputs)``, recomputed in backward when ``checkpoint_encoders`` is set."""
        return recompute_in_backward(encoder, *inputs, module=self, enabled=self.checkpoint_encoders)

    def upsample(self, features: torch.Tensor, image: torch.Tensor, output_size: Tuple[int, int]) -> torch.Tensor:
        if min(image.shape[-2:]) <= self.kernel_size // 2:
            raise ValueError(f"image ({image.shape[2]}x{image.shape[3]}) must be larger than kernel_size // 2 = "
                             f"{self.kernel_size // 2} in both dimensions (reflect padding)")
        image_code = self._encode(self.encode_image, image)
        queries = self._encode(self.encode_queries, image_code, output_size)
        keys = self._encode(self.encode_keys, image_code, features)
        del image_code
        return self.cross_decode.cross_attn(queries, keys, features, max_pixels_per_chunk=self.max_pixels_per_chunk,
                                            dense=self.backend == "dense")


def _check_config(qk_dim: int, num_heads: int, kernel_size: int, backend: str) -> None:
    if qk_dim % GROUPS or qk_dim % num_heads:
        raise ValueError(f"qk_dim must be a multiple of {GROUPS} (GroupNorm groups) and of num_heads "
                         f"({num_heads}), got {qk_dim}")
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd (the image encoder keeps the image size), got {kernel_size}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


@UPSAMPLERS.register("jafar")
def build_jafar(pretrained=None, progress: bool = True, input_dim: int = 3, qk_dim: int = 128,
                v_dim: Optional[int] = None, kernel_size: int = 1, num_heads: int = 4,
                feature_dim: Optional[int] = None, **options) -> JAFAR:
    """JAFAR with optional weights: a release name (``RELEASES``, one per backbone; ``True``
    is DINOv2 ViT-S/14), a URL (incl. ``file://``), a local path, or ``None`` (random).

    ``v_dim=None`` takes the width from the checkpoint (384 without one). Official training
    checkpoints (``{"jafar": state_dict, "optimizer_jafar", "epoch", "cfg"}``) and plain
    state_dicts both load; any missing, unexpected or mis-shaped key raises
    :class:`~anyup_dense.checkpoints.CheckpointMismatchError` listing them. The pickled
    OmegaConf ``cfg`` of a training checkpoint is read through :class:`OmegaConfStandIn`,
    without omegaconf. ``options``: :class:`JAFAR`'s ``backend``, ``max_pixels_per_chunk``,
    ``check_finite``.
    """
    state_dict = None if pretrained is None else load_weights(pretrained, RELEASES, progress=progress,
                                                              safe_globals=CHECKPOINT_SAFE_GLOBALS)
    if v_dim is None:
        first_conv = (state_dict or {}).get("key_features_encoder.0.weight")
        v_dim = 384 if first_conv is None else first_conv.shape[1]
    model = JAFAR(input_dim=input_dim, qk_dim=qk_dim, v_dim=v_dim, feature_dim=feature_dim,
                  kernel_size=kernel_size, num_heads=num_heads, **options)
    if state_dict is not None:
        load_state_dict_strict(model, state_dict, source=f"JAFAR checkpoint {pretrained!r}")
    return model.eval()
