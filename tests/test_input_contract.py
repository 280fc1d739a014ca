"""The input contract shared by every upsampler: clear ValueErrors, any C / size / dtype."""
import numpy as np
import pytest
import torch

from anyup_dense import build_upsampler
from anyup_dense.upsamplers.base import validate_inputs

ANY_C_UPSAMPLERS = {
    "bilinear": {},
    "bicubic": {},
    "anyup": dict(qk_dim=16, num_heads=2),
}


def make(name: str, **extra):
    return build_upsampler(name, **ANY_C_UPSAMPLERS[name], **extra).eval()


def inputs(b=1, c=6, h=4, w=5, hh=28, ww=35, dtype=torch.float32):
    return torch.randn(b, c, h, w, dtype=dtype), torch.randn(b, 3, hh, ww, dtype=dtype)


BAD_INPUTS = [
    ("non-4-D features", lambda f, i: (f[0], i), "features must be a 4-D tensor"),
    ("non-4-D image", lambda f, i: (f, i[0]), "image must be a 4-D tensor"),
    ("not a tensor", lambda f, i: (f.numpy(), i), "features must be a torch.Tensor"),
    ("integer features", lambda f, i: (f.long(), i), "features must be a floating-point tensor"),
    ("batch mismatch", lambda f, i: (f, torch.cat([i, i])), "batch size mismatch: features has 1 samples but image has 2"),
    ("1-row feature map", lambda f, i: (f[:, :, :1], i), r"features must be at least 2x2 spatially, got 1x5"),
    ("image smaller than features", lambda f, i: (f, i[:, :, :3]), r"image \(3x35\) is smaller than the feature map \(4x5\)"),
    ("4-channel image", lambda f, i: (f, torch.cat([i, i[:, :1]], 1)), "image must have 3 channels"),
    ("dtype mismatch", lambda f, i: (f.double(), i), "dtype mismatch: features are torch.float64 but image is torch.float32"),
    ("zero channels", lambda f, i: (f[:, :0], i), r"features must have at least one sample and one channel, got shape \(1, 0, 4, 5\)"),
]


@pytest.mark.parametrize("name", sorted(ANY_C_UPSAMPLERS))
@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_inputs_raise_clear_errors(name, case):
    _, corrupt, message = case
    feats, image = corrupt(*inputs())
    with pytest.raises(ValueError, match=message):
        make(name)(feats, image)


@pytest.mark.parametrize("bad", [0, -3, (4,), (4, 0), (4.0, 5), "448", True, 2.5, (True, 4), torch.tensor([4, 5])])
def test_bad_output_size(bad):
    feats, image = inputs()
    with pytest.raises(ValueError, match="output_size must be None, a positive int or"):
        make("bilinear")(feats, image, output_size=bad)


@pytest.mark.parametrize("size", [np.int64(9), (np.int32(9), torch.tensor(9)), torch.Size([9, 9]), [9, 9]])
def test_integer_scalars_of_any_library_are_sizes(size):
    feats, image = inputs()
    assert make("bilinear")(feats, image, output_size=size).shape == (1, 6, 9, 9)


def test_weights_dtype_mismatch_names_the_fix():
    feats, image = inputs(dtype=torch.float64)
    with pytest.raises(ValueError, match=r"upsampler's weights are torch.float32 but features/image are torch.float64"):
        make("anyup")(feats, image)


@pytest.mark.parametrize("name", sorted(ANY_C_UPSAMPLERS))
def test_check_finite(name):
    feats, image = inputs()
    feats[0, 1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="features contain NaN or Inf"):
        make(name, check_finite=True)(feats, image)
    image[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="image contain NaN or Inf"):
        make(name, check_finite=True)(feats.nan_to_num(), image)


@pytest.mark.parametrize("name", sorted(ANY_C_UPSAMPLERS))
@pytest.mark.parametrize("channels", [1, 3, 37])
@pytest.mark.parametrize("output_size", [None, 9, (40, 17), (3, 64)])
def test_any_channels_and_output_size(name, channels, output_size):
    feats, image = inputs(b=2, c=channels)
    with torch.no_grad():
        out = make(name)(feats, image, output_size=output_size)
    expected = {None: (28, 35), 9: (9, 9)}.get(output_size, output_size)
    assert out.shape == (2, channels, *expected)
    assert torch.isfinite(out).all()


# Relative L2 error against float32, measured over 20 seeds of this case (CPU): fp16 at most
# 6.8e-4, bf16 at most 5.0e-3 (8 vs 11 mantissa bits); tolerances about 3x that.
LOW_PRECISION_TOLERANCE = {torch.float16: 2e-3, torch.bfloat16: 1.5e-2}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_runs_close_to_float32(dtype):
    """fp16/bf16 run end to end; the result stays near the float32 one (AnyUp is a convex
    combination of the features, so the error is bounded by the attention's precision)."""
    model = make("anyup")
    feats, image = inputs()
    with torch.no_grad():
        ref = model(feats, image)
        low = model.to(dtype)(feats.to(dtype), image.to(dtype))
    assert low.dtype == dtype
    assert ((low.float() - ref).norm() / ref.norm()).item() < LOW_PRECISION_TOLERANCE[dtype]


def test_validate_inputs_resolves_size():
    feats, image = inputs()
    assert validate_inputs(feats, image) == (28, 35)
    assert validate_inputs(feats, image, 12) == (12, 12)
    assert validate_inputs(feats, image, [10, 20]) == (10, 20)
    with pytest.raises(ValueError, match="features have 6 channels but this upsampler's weights expect 384"):
        validate_inputs(feats, image, expected_channels=384)


def test_baselines_take_pretrained_none_only():
    assert isinstance(build_upsampler("bilinear", pretrained=None), torch.nn.Module)
    with pytest.raises(ValueError, match="the bicubic upsampler has no weights; pretrained must be None"):
        build_upsampler("bicubic", pretrained="anyup_paper")
