"""Upsample Anything (per-image fitted kernel): interface, cost bounds (parity with
the official fit: tests/test_parity.py).

The implementation is written from the spec only (the official code has no licence).
"""
import math

import pytest
import torch
import torch.nn.functional as F

from anyup_dense.imaging import IMAGENET_MEAN, IMAGENET_STD
from anyup_dense.registry import UPSAMPLERS
from anyup_dense.upsamplers import upsample_anything_kernel as kernel
from anyup_dense.upsamplers.upsample_anything import UpsampleAnything
from helpers import FIXTURES, load_fixture, relative_errors
from parity_adapters import upa_start

CASES = sorted(p.name for p in FIXTURES.glob("upa_*.pt"))


def normalise(rgb: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] -> ImageNet-normalised, the interface's image convention."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=rgb.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=rgb.dtype).view(1, 3, 1, 1)
    return (rgb - mean) / std


def test_published_defaults():
    up = UpsampleAnything()
    assert (up.steps, up.lr, up.init_sigma, up.init_sigma_r) == (51, 0.1, 16.0, 0.12)
    assert math.isclose(up.lr_gamma ** 5100, 1e-8, rel_tol=1e-12)
    start = kernel.init_maps((3, 4), torch.float64)
    assert {k: v.unique().item() for k, v in start.items()} == {
        "sx_raw": math.log(16), "sy_raw": math.log(16), "th_raw": 0.0, "sr_raw": math.log(0.12)}


def test_interface_reproduces_fixture_float64():
    """``fit`` and ``apply`` on the ImageNet-normalised image: the same fit and output (non-square case)."""
    case = load_fixture("upa_perturbed_6x9_s5.pt")
    hr, feat = case["inputs"]["hr"], case["inputs"]["feat_lr"]
    up = UpsampleAnything(steps=case["config"]["steps"])
    maps = up.fit(normalise(hr), feat.shape[-2:], init=upa_start(case))
    for key, ref in case["intermediates"]["params_after_step"][-1].items():
        assert (maps[key] - ref).abs().max() <= 1e-9, key
    out = up.apply_maps(maps, feat, normalise(hr))
    assert out.dtype == torch.float64 and out.shape == case["output"].shape
    assert relative_errors(out, case["output"])[0] <= 1e-9


@pytest.mark.parametrize("shape, chunk_size", [(((1, 3, 24, 32), (1, 4, 6, 8)), 60000),  # 3 chunks of 2 LR rows
                                               (((1, 3, 56, 56), (1, 32, 8, 8)), None)])  # large enough for threads
def test_seeded_fit_is_bitwise_deterministic(shape, chunk_size):
    """Gathers use F.embedding, whose CPU backward is deterministic (indexing's accumulation
    is not with several threads: the second case differed by 7e-5 before)."""
    image, feat = torch.randn(shape[0]), torch.randn(shape[1])
    up = UpsampleAnything(steps=3, **({} if chunk_size is None else {"chunk_size": chunk_size}))
    first, second = up(feat, image), up(feat, image)
    assert torch.equal(first, second)


def test_fit_under_no_grad_and_inference_mode():
    """Evaluation loops call upsamplers under no_grad / inference_mode; the fit enables gradients itself."""
    image, feat = torch.randn(1, 3, 12, 16), torch.randn(1, 3, 3, 4)
    up = UpsampleAnything(steps=2)
    reference = up(feat, image)
    with torch.no_grad():
        assert torch.equal(up(feat, image), reference)
    with torch.inference_mode():
        assert torch.equal(up(feat.clone(), image.clone()), reference)


def test_batch_is_fitted_per_image():
    """B=2 equals the two images fitted on their own (bitwise), and the images get different maps."""
    image, feat = torch.randn(2, 3, 20, 15), torch.randn(2, 5, 4, 3)
    up = UpsampleAnything(steps=2)
    maps = up.fit(image, (4, 3))
    assert maps["sx_raw"].shape == (2, 1, 4, 3)
    out = up.apply_maps(maps, feat, image)
    for b in range(2):
        alone = up.fit(image[b:b + 1], (4, 3))
        assert all(torch.equal(maps[k][b:b + 1], alone[k]) for k in alone)
        assert torch.equal(out[b:b + 1], up.apply_maps(alone, feat[b:b + 1], image[b:b + 1]))
    assert not torch.equal(maps["sr_raw"][0], maps["sr_raw"][1])


def test_guide_resize_and_output_size():
    """A 31x44 image and a 6x9 grid: s = round(max(31/6, 44/9)) = 5, the guide is the image resized
    to 30x45 (bicubic, antialiased); a non-square output_size is the native 30x45 result resized
    bilinearly; and the features' dtype is kept."""
    image, feat = torch.randn(1, 3, 31, 44), torch.randn(1, 2, 6, 9, dtype=torch.float64)
    up = UpsampleAnything(steps=2)
    assert up.fit_scale((31, 44), (6, 9)) == 5
    hr = up.guide(image.double(), (6, 9))
    assert hr.shape == (1, 3, 30, 45) and hr.min() >= 0 and hr.max() <= 1
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64).view(1, 3, 1, 1)
    expected = F.interpolate(image.double() * std + mean, size=(30, 45), mode="bicubic", align_corners=False,
                             antialias=True).clamp(0, 1)
    assert torch.equal(hr, expected)
    maps = up.fit(image.double(), (6, 9))
    native = up.apply_maps(maps, feat, image.double(), output_size=(30, 45))
    assert native.shape == (1, 2, 30, 45)
    resized = up.apply_maps(maps, feat, image.double(), output_size=(17, 50))
    assert torch.equal(resized, F.interpolate(native, size=(17, 50), mode="bilinear", align_corners=False))
    half = up.apply_maps({k: v.float() for k, v in maps.items()}, feat.half(), image.half(), output_size=(30, 45))
    assert half.dtype == torch.float16 and half.shape == (1, 2, 30, 45)


def test_any_channel_count_matches_per_channel_result():
    """The kernel is per channel: C=7 at once equals each channel alone (float64, 1e-14)."""
    case = load_fixture(CASES[0])
    hr, feat = case["inputs"]["hr"], torch.randn(1, 7, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        together = kernel.render(upa_start(case), feat, hr)
        for c in range(7):
            alone = kernel.render(upa_start(case), feat[:, c:c + 1], hr)
            assert relative_errors(together[:, c:c + 1], alone)[0] <= 1e-14


def test_chunks_bound_the_work():
    """No chunk holds more than chunk_size (pixel, neighbour) pairs once chunk_size fits one cell; the
    chunks (here parts of LR rows) tile the grid, and the result does not depend on them."""
    hr, feat = torch.rand(1, 3, 24, 40, dtype=torch.float64), torch.randn(1, 6, 6, 10, dtype=torch.float64)
    maps = kernel.init_maps((6, 10), torch.float64)
    chunk_size = 197 * (16 + 6) * 5  # five 4x4-pixel cells with their 197 neighbours and 6 channels
    rects = [rect for rect, _ in kernel.render_chunks(maps, feat, hr, chunk_size)]
    assert max((u1 - u0) * (v1 - v0) for u0, u1, v0, v1 in rects) == 5
    covered = torch.zeros(6, 10, dtype=torch.int64)
    for u0, u1, v0, v1 in rects:
        covered[u0:u1, v0:v1] += 1
    assert (covered == 1).all()
    with torch.no_grad():
        chunked, whole = kernel.render(maps, feat, hr, chunk_size), kernel.render(maps, feat, hr)
    assert relative_errors(chunked, whole)[0] <= 1e-14


def test_progress_bar(capsys):
    image, feat = torch.randn(1, 3, 12, 12), torch.randn(1, 2, 3, 3)
    quiet = UpsampleAnything(steps=2)(feat, image)
    assert capsys.readouterr().err == ""
    loud = UpsampleAnything(steps=2, progress=True)(feat, image)
    assert "upsample_anything fit" in capsys.readouterr().err
    assert torch.equal(quiet, loud)


def test_registered_builder():
    up = UPSAMPLERS.build("upsample_anything", steps=3, lr=0.05)
    assert isinstance(up, UpsampleAnything) and (up.steps, up.lr) == (3, 0.05)
    with pytest.raises(ValueError, match="pretrained"):
        UPSAMPLERS.build("upsample_anything", pretrained="x")


@pytest.mark.parametrize("kwargs, match", [
    (dict(steps=0), "steps must be a positive int"),
    (dict(steps=2.0), "steps must be a positive int"),
    (dict(lr=0), "lr must be a positive finite number"),
    (dict(lr=-0.1), "lr must be a positive finite number"),
    (dict(lr=float("nan")), "lr must be a positive finite number"),
    (dict(lr_gamma=0.0), "lr_gamma must be a positive"),
    (dict(init_sigma=-1), "init_sigma must be a positive"),
    (dict(init_sigma_r=float("inf")), "init_sigma_r must be a positive"),
    (dict(scale=0), "scale must be a positive int"),
    (dict(chunk_size=0), "chunk_size must be a positive int"),
    (dict(progress="yes"), "progress must be True or False"),
])
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UpsampleAnything(**kwargs)


def test_bad_fit_and_apply_arguments():
    up = UpsampleAnything(steps=1)
    image, feat = torch.randn(1, 3, 12, 12), torch.randn(1, 2, 3, 3)
    with pytest.raises(ValueError, match="image must be a"):
        up.fit(image[:, :2], (3, 3))
    with pytest.raises(ValueError, match="feature_size must be"):
        up.fit(image, (3, 0))
    with pytest.raises(ValueError, match="feature_size must be"):
        up.fit(image, (13, 3))
    maps = up.fit(image, (3, 3))
    with pytest.raises(ValueError, match="maps must be a dict with keys"):
        up.apply_maps({k: v for k, v in maps.items() if k != "th_raw"}, feat, image)
    with pytest.raises(ValueError, match=r"maps\['sx_raw'\] must be a tensor \[1, 1, 4, 4\]"):
        up.apply_maps(maps, torch.randn(1, 2, 4, 4), image)
    with pytest.raises(ValueError, match=r"init\['sr_raw'\] must be a tensor \[1, 1, 3, 3\]"):
        up.fit(image, (3, 3), init={**maps, "sr_raw": torch.zeros(1, 3, 3)})
    with pytest.raises(ValueError, match="features must be a 4-D tensor"):
        up(feat[0], image)
