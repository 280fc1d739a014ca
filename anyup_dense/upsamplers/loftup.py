"""LoftUp (Huang et al., ICCV 2025): a coordinate-based upsampler with global cross-attention.

Numerically the released torch.hub model of github.com/andrehuang/loftup @ 6620d9b,
``UpsamplerwithChannelNorm(LoftUp(dim, lr_pe_type="sine"), ChannelNorm(dim))``, in eval mode,
with the official parameter names (``upsampler.*``, ``channelnorm.*``), so the released
``pytorch_model.bin`` files load strictly. Forward, for features [B,C,h,w] and a guidance image
[B,3,H,W] (resized bilinearly, ``align_corners=False``, to ``output_size`` first):

  1. kv = [ChannelNorm(features), sine PE of the h x w grid] as tokens      [B, h*w, C+20]
  2. X  = MinMaxScaler(guidance); Phi = Fourier features of (row, col, X)   [B, 10F+3, H, W]
  3. q  = first_conv(Phi): ChannelNorm, 3x3 conv, BN, ReLU, 3x3 conv, BN, ReLU  [B, E, H, W]
  4. q  = CATransformer(q tokens, kv): every pixel attends to all h*w tokens  [B, H*W, E]
  5. out = LayerNorm_eps1e-6(conv1x1(q))                                       [B, C, H, W]

The official model materialises B*heads*H*W*h*w attention logits (twice) and every full-resolution
activation. Here steps 2-5 run on bands of output rows (with a 2-row halo for the two 3x3 convs),
so memory is bounded by the band: everything after the min-max statistics is per pixel or local.
With gradients enabled each band is recomputed in the backward pass (gradient checkpointing), which
bounds training memory the same way. ``dense=True`` runs the whole image as one band (all
full-resolution activations at once, as the official code) for comparison. Attention never stores
its logits (``scaled_dot_product_attention``).

Differences from the official code, none of which change the float64 result:
  * the Fourier block (min-max scaling, guidance resize, sin/cos) is computed in float64 for every
    model dtype and then cast (see :func:`~anyup_dense.upsamplers.loftup_layers.fourier_dtype`):
    float32 lands within rel_max 3.2e-6 of the float64 reference instead of the official 2.2e-3;
  * BatchNorm always uses its running statistics, also after ``train()``;
  * opt-in ``per_image_minmax=True`` makes the result independent of the rest of the batch.

Low precision: a bf16/fp16 model on bf16/fp16 inputs is within a mean relative error of ~9e-3
(bf16) / ~1e-3 (fp16) of float32 on the same inputs (C = 384, random weights). But rounding the
*image* to bf16/fp16 itself moves the colour Fourier features (frequencies up to 22026 turn a
colour change of 1e-3 into tens of radians): measured 0.38-0.57 (bf16) and 0.16-0.36 (fp16) mean
relative change of the output at random weights. The image is what LoftUp's pixel features hash.
"""
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from anyup_dense.checkpoints import (CheckpointMismatchError, Release, hf_url, load_state_dict_strict, load_weights,
                                    releases, with_release_kwargs)
from anyup_dense.ops.chunking import check_chunk_size
from anyup_dense.registry import UPSAMPLERS
from anyup_dense.upsamplers.base import Upsampler
from anyup_dense.upsamplers.channel_norm import ChannelNorm, LayerNorm2d
from anyup_dense.upsamplers.recompute import records_graph
from anyup_dense.upsamplers.loftup_layers import (CATransformer,
                                                  FourierFeatures, MinMaxScaler, RunningStatsBatchNorm2d,
                                                  fourier_dtype)


def _release(name: str, repo: str, dim: int, lr_size: int, trained_on: str, *backbones: str) -> Release:
    """The ``pytorch_model.bin`` of a torch.hub entry, with the ``dim``/``lr_size`` it builds."""
    # Every release file is called pytorch_model.bin: give each its own name in torch.hub's cache.
    return Release(name, hf_url(repo, "pytorch_model.bin"), file_name=f"{repo.split('/')[1]}_pytorch_model.bin",
                   backbones=backbones, trained_on=trained_on, licence="MIT",
                   build_kwargs=dict(dim=dim, lr_size=lr_size))


RELEASES = releases(
    _release("loftup_dinov2s", "haiwen/loftup-dinov2s", 384, 16, "DINOv2 ViT-S/14", "vit_small_patch14_dinov2.lvd142m"),
    _release("loftup_dinov2s_reg", "haiwen/loftup-dinov2s_reg", 384, 16, "DINOv2 ViT-S/14 with registers",
             "vit_small_patch14_reg4_dinov2.lvd142m"),
    _release("loftup_dinov2b", "haiwen/loftup-dinov2b", 768, 14, "DINOv2 ViT-B/14", "vit_base_patch14_dinov2.lvd142m"),
    _release("loftup_dinov2b_reg", "haiwen/loftup-dinov2b_reg", 768, 14, "DINOv2 ViT-B/14 with registers",
             "vit_base_patch14_reg4_dinov2.lvd142m"),
    _release("loftup_clip", "haiwen/loftup-clip", 512, 14, "CLIP ViT-B/16 (MaskCLIP patch encodings)"),
    _release("loftup_siglip", "haiwen/loftup-siglip", 768, 14, "SigLIP ViT-B/16 (open_clip ViT-B-16-SigLIP)"),
    _release("loftup_siglip2", "haiwen/loftup-siglip2", 768, 14, "SigLIP 2 ViT-B/16 (open_clip ViT-B-16-SigLIP2)"),
)

LR_PE_FREQS = 5  # the low-res sine PE always uses 5 frequencies (20 channels)
DEFAULT_MAX_PIXELS_PER_CHUNK = 2 ** 15


class LoftUpCore(nn.Module):
    """The official ``LoftUp`` module (the ``upsampler.*`` keys): expects ChannelNorm-ed features.

    Args are the official constructor's; ``num_conv_layers`` is accepted and unused, as there.
    ``per_image_minmax``: see :class:`~anyup_dense.upsamplers.loftup_layers.MinMaxScaler`.
    """

    def __init__(self, dim: int, color_feats: bool = True, n_freqs: int = 20, num_heads: int = 4,
                 num_layers: int = 2, num_conv_layers: int = 1, lr_size: int = 16, lr_pe_type: str = "sine",
                 per_image_minmax: bool = False):
        super().__init__()
        if lr_pe_type not in ("sine", "learnable"):
            raise ValueError(f"lr_pe_type must be 'sine' or 'learnable', got {lr_pe_type!r}")
        self.dim, self.color_feats, self.lr_pe_type, self.lr_size = dim, color_feats, lr_pe_type, lr_size
        width = dim + 4 * LR_PE_FREQS if lr_pe_type == "sine" else dim
        if width % num_heads:
            raise ValueError(f"num_heads ({num_heads}) must divide the token width {width} "
                             f"(dim{' + 20' if lr_pe_type == 'sine' else ''})")
        n_inputs = 5 if color_feats else 2
        fourier_dim = 2 * n_freqs * n_inputs + (3 if color_feats else 0)
        if lr_pe_type == "sine":
            self.lr_pe = FourierFeatures(2, LR_PE_FREQS)
        else:
            self.lr_pe = nn.Parameter(torch.randn(1, lr_size * lr_size, dim))
        self.fourier_feat = nn.ModuleList([MinMaxScaler(per_image_minmax), FourierFeatures(n_inputs, n_freqs)])
        self.first_conv = nn.Sequential(
            ChannelNorm(fourier_dim),
            nn.Conv2d(fourier_dim, width, 3, padding=1), RunningStatsBatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), RunningStatsBatchNorm2d(width), nn.ReLU())
        if lr_pe_type == "sine":
            self.final_conv = nn.Sequential(nn.Conv2d(width, dim, 1), LayerNorm2d(dim))
        else:
            self.final_conv = LayerNorm2d(dim)
        self.ca_transformer = CATransformer(width, num_layers, num_heads, mlp_dim=dim)

    def kv_tokens(self, lr_feats: torch.Tensor) -> torch.Tensor:
        """ChannelNorm-ed features [B,C,h,w] -> key/value tokens [B, h*w, E] (row-major)."""
        b, c, h, w = lr_feats.shape
        tokens = lr_feats.flatten(2).transpose(1, 2)
        if self.lr_pe_type == "sine":
            pe = self.lr_pe((h, w), (0, h), b).to(lr_feats.dtype)
            return torch.cat([tokens, pe.flatten(2).transpose(1, 2)], dim=2)
        pe = self.lr_pe
        if h * w != pe.shape[1]:  # official: compares token counts, not grid shapes
            n = self.lr_size
            grid = pe.transpose(1, 2).reshape(1, c, n, n)
            pe = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False).flatten(2).transpose(1, 2)
        return tokens + pe

    def band(self, scaled: Optional[torch.Tensor], grid_hw: Tuple[int, int], batch: int, rows: Tuple[int, int],
             keys_values) -> torch.Tensor:
        """Output rows ``rows = (r0, r1)`` [B, C, r1-r0, W] from the min-max-scaled guidance
        [B,3,H,W] (``None`` without colour features) and the transformer's keys and values.

        The two 3x3 convs need a 2-row halo; each conv's rows that saw a band edge instead of
        the image edge are cropped, so the band equals those rows of the full computation.
        """
        (height, width), (r0, r1) = grid_hw, rows
        dtype = self.first_conv[1].weight.dtype
        lo, hi = max(0, r0 - 2), min(height, r1 + 2)
        colors = None if scaled is None else scaled[:, :, lo:hi]
        x = self.first_conv[0](self.fourier_feat[1](grid_hw, (lo, hi), batch, colors).to(dtype))
        x = self.first_conv[1:4](x)
        mid_lo, mid_hi = max(0, r0 - 1), min(height, r1 + 1)
        x = self.first_conv[4:7](x[:, :, mid_lo - lo:mid_hi - lo])
        x = x[:, :, r0 - mid_lo:r1 - mid_lo]
        q = self.ca_transformer(x.flatten(2).transpose(1, 2), keys_values)
        return self.final_conv(q.transpose(1, 2).reshape(batch, -1, r1 - r0, width))

    def forward(self, lr_feats: torch.Tensor, guidance: torch.Tensor, max_pixels_per_chunk: Optional[int] = None,
                dense: bool = False) -> torch.Tensor:
        """ChannelNorm-ed features [B,C,h,w] and guidance [B,3,H,W] -> [B,C,H,W].

        Output rows are computed in bands of at most ``max_pixels_per_chunk`` pixels (rounded
        down to whole rows, at least one row; default 2**15); ``dense`` computes all at once.
        """
        b, _, height, width = guidance.shape
        grid_hw = (height, width)
        keys_values = self.ca_transformer.keys_values(self.kv_tokens(lr_feats))
        scaled = self.fourier_feat[0](guidance.to(fourier_dtype(guidance.device))) if self.color_feats else None
        if dense:
            return self.band(scaled, grid_hw, b, (0, height), keys_values)
        pixels = check_chunk_size(max_pixels_per_chunk) or DEFAULT_MAX_PIXELS_PER_CHUNK
        step = max(1, pixels // width)
        bands = [(r0, min(height, r0 + step)) for r0 in range(0, height, step)]
        if records_graph(scaled, keys_values, module=self):  # each band is recomputed in the backward pass
            return torch.cat([checkpoint(self.band, scaled, grid_hw, b, rows, keys_values, use_reentrant=False)
                              for rows in bands], dim=2)
        out = lr_feats.new_empty(b, self.dim, height, width)
        for r0, r1 in bands:
            out[:, :, r0:r1] = self.band(scaled, grid_hw, b, (r0, r1), keys_values)
        return out


class LoftUp(Upsampler):
    """LoftUp as released on torch.hub: ``ChannelNorm(dim)`` on the features, then
    :class:`LoftUpCore`. The defaults are the released architecture (4,303,894 parameters at
    dim 384); ``dim`` is the feature channel count C and is required.

    Args:
        dim, color_feats, n_freqs, num_heads, num_layers, num_conv_layers, lr_size, lr_pe_type:
            the official ``LoftUp`` constructor arguments.
        per_image_minmax: min-max-scale each guidance image on its own instead of over the
            batch (official: over the batch, so results depend on the batch composition).
        max_pixels_per_chunk: output pixels per band (forward and backward memory bound).
        dense: compute the whole output at once (for comparisons; memory grows with H*W*E).
        check_finite: reject NaN/Inf inputs.

    ``forward(features [B,dim,h,w], image [B,3,H,W], output_size=None)`` -> [B,dim,H',W']: the
    guidance image is resized bilinearly (``align_corners=False``) to ``output_size`` when that
    differs from the image size, as in the official examples.
    """

    min_feature_size = 1  # any h, w >= 1: the low-res tokens need no neighbours

    def __init__(self, dim: int, color_feats: bool = True, n_freqs: int = 20, num_heads: int = 4,
                 num_layers: int = 2, num_conv_layers: int = 1, lr_size: int = 16, lr_pe_type: str = "sine",
                 per_image_minmax: bool = False, max_pixels_per_chunk: Optional[int] = None, dense: bool = False,
                 check_finite: bool = False):
        super().__init__(check_finite=check_finite)
        self.expected_channels = dim
        self.max_pixels_per_chunk = max_pixels_per_chunk
        self.dense = dense
        self.upsampler = LoftUpCore(dim, color_feats, n_freqs, num_heads, num_layers, num_conv_layers, lr_size,
                                    lr_pe_type, per_image_minmax)
        self.channelnorm = ChannelNorm(dim)

    def upsample(self, features: torch.Tensor, image: torch.Tensor, output_size: Tuple[int, int]) -> torch.Tensor:
        guidance = image.to(fourier_dtype(image.device))  # only feeds the Fourier block (3 channels)
        if tuple(output_size) != tuple(image.shape[-2:]):
            guidance = F.interpolate(guidance, size=output_size, mode="bilinear", align_corners=False)
        return self.upsampler(self.channelnorm(features), guidance, self.max_pixels_per_chunk, self.dense)


def wrapper_state_dict(state_dict: Dict[str, torch.Tensor], source,
                       assume_identity_channelnorm: bool = False) -> Dict[str, torch.Tensor]:
    """The wrapper's state_dict (``upsampler.*`` and ``channelnorm.*`` keys) from a file of
    either official layout (``source`` names it in errors):

      * ``pytorch_model.bin`` (what the torch.hub entries load): the wrapper's state_dict;
      * ``model.safetensors`` (``PyTorchModelHubMixin``, pushed by the official ``push_to_hf.py``):
        the bare ``LoftUp`` without the ``upsampler.`` prefix and without the ChannelNorm that the
        trained model applies to its input features. Its affine is not in that file, so loading
        one requires ``assume_identity_channelnorm=True`` (weight 1, bias 0: a guess, exact only
        if the ChannelNorm was never trained).
    """
    if any(key.startswith("upsampler.") for key in state_dict):
        return state_dict
    if any(key.startswith("channelnorm.") for key in state_dict):
        raise CheckpointMismatchError(f"LoftUp checkpoint {source!r} has channelnorm.* keys but no upsampler.* keys")
    if not assume_identity_channelnorm:
        raise CheckpointMismatchError(
            f"LoftUp checkpoint {source!r} holds the bare upsampler (no 'upsampler.' prefix, no channelnorm.* "
            f"keys, as in the Hugging Face model.safetensors): the trained ChannelNorm affine is only in "
            f"pytorch_model.bin. Load that file, or pass assume_identity_channelnorm=True to use weight 1, bias 0")
    state_dict = {f"upsampler.{key}": value for key, value in state_dict.items()}
    dim = state_dict["upsampler.final_conv.1.weight" if "upsampler.final_conv.1.weight" in state_dict
                     else "upsampler.final_conv.weight"].shape[0]
    state_dict["channelnorm.norm.weight"] = torch.ones(dim)
    state_dict["channelnorm.norm.bias"] = torch.zeros(dim)
    return state_dict


@UPSAMPLERS.register("loftup")
def build_loftup(pretrained: Optional[str] = None, progress: bool = True, dim: Optional[int] = None,
                 color_feats: bool = True, n_freqs: int = 20, num_heads: int = 4, num_layers: int = 2,
                 num_conv_layers: int = 1, lr_size: Optional[int] = None, lr_pe_type: str = "sine",
                 assume_identity_channelnorm: bool = False, **other) -> LoftUp:
    """LoftUp with optional weights: a release name (``"loftup_dinov2s"``, ``"loftup_dinov2s_reg"``,
    ``"loftup_dinov2b"``, ``"loftup_dinov2b_reg"``, ``"loftup_clip"``, ``"loftup_siglip"``,
    ``"loftup_siglip2"``; these set ``dim`` and ``lr_size`` as the official hub entries do; ``True``
    is the first), a URL (incl. ``file://``), a local path (``.bin``/``.pt`` state_dict or
    ``.safetensors``, see :func:`wrapper_state_dict`), or ``None`` (random weights; ``dim`` required).

    The other arguments are the official constructor's (``lr_size`` defaults to 16) plus
    :class:`LoftUp`'s keyword options (``per_image_minmax``, ``max_pixels_per_chunk``, ``dense``,
    ``check_finite``). Any missing, unexpected or mis-shaped key raises
    :class:`~anyup_dense.checkpoints.CheckpointMismatchError` listing them.
    """
    if pretrained is False:
        pretrained = None
    sizes = with_release_kwargs(pretrained, RELEASES, dict(dim=dim, lr_size=lr_size))
    if sizes["dim"] is None:
        raise ValueError("dim (the feature channel count) is required unless pretrained is a release name")
    model = LoftUp(sizes["dim"], color_feats, n_freqs, num_heads, num_layers, num_conv_layers,
                   16 if sizes["lr_size"] is None else sizes["lr_size"], lr_pe_type, **other)
    if pretrained is not None:
        state_dict = wrapper_state_dict(load_weights(pretrained, RELEASES, progress=progress), pretrained,
                                        assume_identity_channelnorm)
        load_state_dict_strict(model, state_dict, source=f"LoftUp checkpoint {pretrained!r}")
    return model.eval()
