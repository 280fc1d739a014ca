"""The interface every upsampler shares, and its input contract.

    up(features [B,C,h,w], image [B,3,H,W], output_size=None) -> [B,C,H',W']

``image`` is ImageNet-normalised RGB. ``output_size`` is ``None`` (the image size), an int
(square) or ``(H', W')``. Subclasses implement :meth:`Upsampler.upsample`, which receives
inputs that already passed :func:`validate_inputs`.
"""
import operator
from typing import Callable, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

SizeArg = Union[None, int, Sequence[int]]
# What ``featurizer=`` takes (upsamplers with ``requires_featurizer``): the backbone as a function,
# ImageNet-normalised crops [N,3,R,R] -> features [N,D,R/p,R/p] (R the model resolution, p the patch).
Featurizer = Callable[[torch.Tensor], torch.Tensor]

MIN_FEATURE_SIZE = 2


def _check_4d(name: str, tensor, layout: str) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape {layout}, got {type(tensor).__name__}")
    if tensor.dim() != 4:
        raise ValueError(f"{name} must be a 4-D tensor {layout}, got shape {tuple(tensor.shape)}")
    if not tensor.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {tensor.dtype}")


def _as_int(value) -> Optional[int]:
    """A Python, numpy or 0-d torch integer as ``int``; ``None`` for anything else (bools,
    floats, strings, tensors with more than one element)."""
    if isinstance(value, bool) or (isinstance(value, torch.Tensor) and value.dim() != 0):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def resolve_output_size(output_size: SizeArg, image_hw: Tuple[int, int]) -> Tuple[int, int]:
    """``None`` -> image size; ``n`` -> ``(n, n)``; ``(h, w)`` -> itself. Positive integers
    only (Python, numpy or 0-d torch integers; not bools or floats)."""
    if output_size is None:
        return tuple(image_hw)
    error = ValueError(f"output_size must be None, a positive int or (height, width) of positive ints, "
                       f"got {output_size!r}")
    single = _as_int(output_size)
    if single is not None:
        size = (single, single)
    elif isinstance(output_size, (tuple, list, torch.Size)) and len(output_size) == 2:
        size = tuple(_as_int(s) for s in output_size)
    else:
        raise error
    if not all(s is not None and s > 0 for s in size):
        raise error
    return size


def validate_inputs(
    features: torch.Tensor,
    image: torch.Tensor,
    output_size: SizeArg = None,
    *,
    guidance_channels: int = 3,
    expected_channels: Optional[int] = None,
    reference_param: Optional[torch.Tensor] = None,
    check_finite: bool = False,
    min_feature_size: int = MIN_FEATURE_SIZE,
) -> Tuple[int, int]:
    """Check the shared input contract and return the resolved ``(H', W')``.

    Raises ``ValueError`` naming the argument and what was expected for: non-tensors or
    non-4-D tensors, a wrong guidance channel count, batch-size mismatch, feature maps
    smaller than ``min_feature_size`` (2x2 by default), images smaller than the feature map, a channel count a checkpoint
    cannot take, dtype/device mismatches between image, features and the module's weights,
    and (with ``check_finite``) NaN/Inf values.
    """
    _check_4d("features", features, "[B, C, h, w]")
    _check_4d("image", image, f"[B, {guidance_channels}, H, W]")
    b, c, h, w = features.shape
    if b == 0 or c == 0:
        raise ValueError(f"features must have at least one sample and one channel, got shape {tuple(features.shape)}")
    if image.shape[1] != guidance_channels:
        raise ValueError(f"image must have {guidance_channels} channels (ImageNet-normalised RGB), "
                         f"got shape {tuple(image.shape)}")
    if image.shape[0] != b:
        raise ValueError(f"batch size mismatch: features has {b} samples but image has {image.shape[0]}")
    if h < min_feature_size or w < min_feature_size:
        raise ValueError(f"features must be at least {min_feature_size}x{min_feature_size} spatially, "
                         f"got {h}x{w}")
    if image.shape[2] < h or image.shape[3] < w:
        raise ValueError(f"image ({image.shape[2]}x{image.shape[3]}) is smaller than the feature map "
                         f"({h}x{w}); pass the full-resolution guidance image")
    if expected_channels is not None and c != expected_channels:
        raise ValueError(f"features have {c} channels but this upsampler's weights expect "
                         f"{expected_channels}")
    if features.dtype != image.dtype:
        raise ValueError(f"dtype mismatch: features are {features.dtype} but image is {image.dtype}; "
                         f"cast both to the upsampler's dtype")
    if features.device != image.device:
        raise ValueError(f"device mismatch: features are on {features.device} but image is on {image.device}")
    if reference_param is not None:
        if reference_param.dtype != features.dtype:
            raise ValueError(f"dtype mismatch: the upsampler's weights are {reference_param.dtype} but "
                             f"features/image are {features.dtype}; call .to({features.dtype}) on the "
                             f"upsampler or cast the inputs")
        if reference_param.device != features.device:
            raise ValueError(f"device mismatch: the upsampler's weights are on {reference_param.device} "
                             f"but features/image are on {features.device}")
    if check_finite:
        for name, tensor in (("features", features), ("image", image)):
            if not torch.isfinite(tensor).all():
                raise ValueError(f"{name} contain NaN or Inf values")
    return resolve_output_size(output_size, (image.shape[2], image.shape[3]))


def keep_as_buffers(module: nn.Module, names: Sequence[str]) -> None:
    """Turn the parameters ``names`` (dotted, relative to ``module``) into buffers of the same
    name: they stay in the state_dict (official checkpoints load strictly) but are no
    longer trainable, so optimizers and DistributedDataParallel never see them. For weights
    the official model stores but never uses in its forward."""
    for name in names:
        owner_name, _, attr = name.rpartition(".")
        owner = module.get_submodule(owner_name)
        tensor = owner._parameters.pop(attr).detach()
        owner.register_buffer(attr, tensor)


class Upsampler(nn.Module):
    """Base class: validates inputs, then calls :meth:`upsample`.

    Attributes a subclass may set:
      * ``expected_channels``: the feature channel count its weights need (``None``: any C);
      * ``guidance_channels``: channels of the guidance image (3, RGB);
      * ``min_feature_size``: the smallest feature map side it takes (2; 1 where the
        architecture needs no neighbours);
      * ``check_finite``: reject NaN/Inf inputs (off by default: it costs a device sync);
      * ``requires_featurizer``: the upsampler runs the backbone itself (FeatSharp's tiles).
        Its forward then also takes ``featurizer=`` (a :data:`Featurizer`: ImageNet-normalised crops
        [N,3,R,R] -> [N,C,R/p,R/p]), and ``model_resolution`` is R: ``features`` must be the
        featurizer's output on the image resized to R x R. Framework integrations check this
        flag and pass the backbone.
    """

    expected_channels: Optional[int] = None
    guidance_channels: int = 3
    min_feature_size: int = MIN_FEATURE_SIZE
    requires_featurizer: bool = False

    def __init__(self, check_finite: bool = False):
        super().__init__()
        self.check_finite = check_finite

    def forward(self, features: torch.Tensor, image: torch.Tensor, output_size: SizeArg = None) -> torch.Tensor:
        """features [B,C,h,w], image [B,3,H,W] (ImageNet-normalised) -> [B,C,H',W']."""
        size = validate_inputs(
            features,
            image,
            output_size,
            guidance_channels=self.guidance_channels,
            expected_channels=self.expected_channels,
            reference_param=next(self.parameters(), None),
            check_finite=self.check_finite,
            min_feature_size=self.min_feature_size,
        )
        return self.upsample(features, image, size)

    def upsample(self, features: torch.Tensor, image: torch.Tensor, output_size: Tuple[int, int]) -> torch.Tensor:
        raise NotImplementedError
