"""UPLiFT (Walmer et al., "UPLiFT: Efficient Pixel-Dense Feature Upsampling with Local Attenders",
CVPR 2026, arXiv 2601.17950): an iterative 2x decoder whose only output is attention weights
over a 17-pixel neighbourhood of the current feature map.

Numerically the official standard path (github.com/mwalmer-umd/UPLiFT @ 85f09ee, ``UPLiFT`` with
Fast Mode off; MIT licence, Copyright (c) 2026 mwalmer-umd) on the official weights, written from
a description of the computation. Parameter names are the official ones, so the Hugging Face
``.safetensors`` checkpoints (72 keys) load strictly. Difference: the Local Attender runs in
chunks of rows, forward and backward (same numbers up to summation order; the official standard
mode needs about 10 GB at 448^2 from [1,384,32,32]).

Forward, for features [B,C,h,w], the normalised image the backbone saw [B,3,H,W] and output (Ho, Wo):
  1. patch 14 only: image resized (bilinear, antialiased) to (16 H // 14, 16 W // 14);
  2. (e3, e4) = encoder(image): five SingleConv stages at that full resolution, run once;
  3. N iterations (``iters``, else the fewest N >= 1 with h 2^N >= Ho and w 2^N >= Wo), V = features:
       guide = decoder(V, NN(e4 -> h_k x w_k), NN(e3 -> 2h_k x 2w_k))   [B,D,2h_k,2w_k]
       V = LocalAttender(guide, V)                                      [B,C,2h_k,2w_k]
     NN is ``F.interpolate(mode="nearest")``: torch's float32 source index min(floor(i * fl32(n/m)), n-1);
  4. V resized to (Ho, Wo) with the antialiased bilinear filter (torchvision's ``resize``; in
     float32 for half-precision inputs, as torchvision does).
"""
from typing import Iterator, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from anyup_dense.checkpoints import (Release, hf_url, load_state_dict_strict, load_weights, releases,
                                    with_release_kwargs)
from anyup_dense.registry import UPSAMPLERS
from anyup_dense.upsamplers.base import Upsampler
from anyup_dense.upsamplers.uplift_layers import Decoder, Encoder, LocalAttender, resize_antialiased


def _release(variant: str, backbone: str, trained_on: str, patch_size: int) -> Release:
    """The Hugging Face checkpoint of an official variant (its config key is the release name)."""
    repo = f"uplift_{variant}"
    return Release(variant, hf_url(f"UPLiFT-upsampler/{repo}", f"{repo}.safetensors"), layout="safetensors",
                   backbones=(backbone,), trained_on=trained_on, licence="MIT",
                   build_kwargs=dict(patch_size=patch_size))


# The two releases share the architecture; only the patch size (image pre-scale) differs.
# The first is the default (pretrained=True).
RELEASES = releases(
    _release("dinov2-s14", "vit_small_patch14_dinov2.lvd142m", "DINOv2-S/14, C=384", patch_size=14),
    _release("dinov3-splus16", "vit_small_plus_patch16_dinov3.lvd1689m", "DINOv3-S+/16, C=384", patch_size=16),
)

PRESCALE_PATCH = 14  # the patch size whose images are pre-scaled to 16 pixels per patch


def prescaled_size(image_hw: Tuple[int, int], patch_size: int) -> Tuple[int, int]:
    """Encoder input size: (16 H // 14, 16 W // 14) for patch 14, else the image size."""
    if patch_size != PRESCALE_PATCH:
        return tuple(image_hw)
    return tuple(16 * s // PRESCALE_PATCH for s in image_hw)


def iterations_for(feature_hw: Tuple[int, int], output_size: Tuple[int, int]) -> int:
    """Fewest 2x iterations N >= 1 whose output (h 2^N, w 2^N) covers ``output_size`` (the
    result is then resized down to it, as in the official DINOv2 example 32 -> 512 -> 448)."""
    (h, w), (ho, wo) = feature_hw, output_size
    n = 1
    while (h << n) < ho or (w << n) < wo:
        n += 1
    return n


def official_output_size(outsize, natural_hw: Tuple[int, int]) -> Tuple[int, int]:
    """The size the official ``forward(..., outsize)`` produces from an iterated map of size
    ``natural_hw``: ``None`` -> itself, ``[Ho, Wo]`` -> itself, an int S -> torchvision's
    shorter-edge rule (shorter side S, the other ``int(S * long / short)``). This package's
    ``output_size=S`` means (S, S) instead; convert official calls with this function."""
    if outsize is None:
        return tuple(natural_hw)
    if isinstance(outsize, int) and not isinstance(outsize, bool):
        h, w = natural_hw
        return (int(outsize * h / w), outsize) if w <= h else (outsize, int(outsize * w / h))
    return tuple(outsize)


def nearest(x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """torchvision ``resize(x, size, NEAREST)`` on a tensor: ``x`` itself at the same size, else
    ``F.interpolate(mode="nearest")`` (torch's float32 source-index rule, any dtype)."""
    if tuple(size) == tuple(x.shape[-2:]):
        return x
    return F.interpolate(x, size=tuple(size), mode="nearest")


class UPLiFT(Upsampler):
    """UPLiFT upsampler; the defaults are the released DINOv2-S/14 architecture (789,521
    parameters, 72 state_dict keys; DINOv3-S+/16 is the same with ``patch_size=16``).

    Args (official names):
        in_channels: feature channels C.
        patch_size: the backbone's patch; 14 pre-scales the image by 16/14.
        iters: number of 2x iterations; ``None`` chooses it from the output size
            (:func:`iterations_for`).
        encoder_hc: the five encoder widths.
        decoder_hc: the two decoder widths (equal, as in every official config).
    Args (ours):
        chunked: run the Local Attender in chunks of rows (forward and backward); ``False``
            materialises the official [B,C,17,h,2,w,2] product (for comparison only).
        max_elements_per_chunk: output elements per attender chunk (default 2**20).
        check_finite: reject NaN/Inf inputs.
    """

    min_feature_size = 1  # replicate padding: any h, w >= 1

    def __init__(self, in_channels: int = 384, patch_size: int = 14, iters: Optional[int] = None,
                 encoder_hc: Sequence[int] = (16, 32, 64, 128, 128), decoder_hc: Sequence[int] = (64, 64),
                 chunked: bool = True, max_elements_per_chunk: Optional[int] = None, check_finite: bool = False):
        super().__init__(check_finite=check_finite)
        encoder_hc, decoder_hc = [int(c) for c in encoder_hc], [int(c) for c in decoder_hc]
        if len(encoder_hc) != 5 or min(encoder_hc) < 1:
            raise ValueError(f"encoder_hc must hold 5 positive widths, got {encoder_hc}")
        if len(decoder_hc) != 2 or decoder_hc[0] != decoder_hc[1] or decoder_hc[0] < 1:
            raise ValueError(f"decoder_hc must hold 2 equal positive widths, got {decoder_hc}")
        if in_channels < 1 or patch_size < 1:
            raise ValueError(f"in_channels and patch_size must be positive, got {in_channels} and {patch_size}")
        if iters is not None and (isinstance(iters, bool) or not isinstance(iters, int) or iters < 1):
            raise ValueError(f"iters must be None or an int >= 1, got {iters!r}")
        self.expected_channels = in_channels
        self.patch_size, self.iters = patch_size, iters
        self.chunked, self.max_elements_per_chunk = chunked, max_elements_per_chunk
        self.encoder = Encoder(encoder_hc)
        self.decoder = Decoder(in_channels, encoder_hc, decoder_hc[0])
        self.attender = LocalAttender(decoder_hc[1])

    def prescale(self, image: torch.Tensor) -> torch.Tensor:
        """The encoder input [B,3,H',W'] (step 1)."""
        return resize_antialiased(image, prescaled_size(image.shape[-2:], self.patch_size))

    def iterate(self, features: torch.Tensor, image: torch.Tensor, iters: int,
                output_size: Optional[Tuple[int, int]] = None) -> Iterator[torch.Tensor]:
        """Yields the attender output of each iteration, [B,C,h 2^(k+1),w 2^(k+1)] (step 3); the
        last one resized to ``output_size`` when given (step 4, fused with the last attender)."""
        # channels_last: oneDNN then runs the full-resolution convolutions without layout copies.
        e3, e4 = self.encoder(self.prescale(image).contiguous(memory_format=torch.channels_last))
        (h, w), value = features.shape[-2:], features
        # Each iteration's subsampled encoder maps, taken up front so that the full-resolution
        # maps (the largest tensors) are released as early as possible.
        enc_lo = [nearest(e4, (h << k, w << k)) for k in range(iters)]
        enc_hi = [nearest(e3, (h << (k + 1), w << (k + 1))) for k in range(iters)]
        del e3, e4
        for k in range(iters):
            guide = self.decoder(value, enc_lo.pop(0), enc_hi.pop(0))
            value = self.attender(guide, value, self.chunked, self.max_elements_per_chunk,
                                  output_size if k == iters - 1 else None)
            del guide
            yield value

    def upsample(self, features: torch.Tensor, image: torch.Tensor, output_size: Tuple[int, int]) -> torch.Tensor:
        iters = self.iters or iterations_for(features.shape[-2:], output_size)
        for value in self.iterate(features, image, iters, output_size):
            pass
        return value


@UPSAMPLERS.register("uplift")
def build_uplift(pretrained=None, progress: bool = True, **kwargs) -> UPLiFT:
    """UPLiFT with optional weights: ``None``/``False`` (random), ``True`` (``"dinov2-s14"``), a
    release name (``"dinov2-s14"``, ``"dinov3-splus16"``; these set ``patch_size``), a URL (incl.
    ``file://``) or a local path, the official ``.safetensors`` or a ``torch.save``'d state_dict.
    Keyword arguments are :class:`UPLiFT`'s (the official constructor names: in_channels,
    patch_size, iters, encoder_hc, decoder_hc).

    Any missing, unexpected or mis-shaped key raises
    :class:`~anyup_dense.checkpoints.CheckpointMismatchError` listing them. The SD1.5-VAE
    release is a different architecture (noise channels, refiner) and is not supported.
    """
    if pretrained is False:
        pretrained = None
    model = UPLiFT(**with_release_kwargs(pretrained, RELEASES, kwargs))
    if pretrained is not None:
        state_dict = load_weights(pretrained, RELEASES, progress=progress)
        load_state_dict_strict(model, state_dict, source=f"UPLiFT checkpoint {pretrained!r}")
    return model.eval()
