"""Hand-computed values of the mmseg probe parts: the angular (normal) loss, the depth head in
both modes and its loss path, the depth and normal metrics, and the coarse maps of a
multi-stride neck. Each expected number comes from the formula written out here in float64,
not from the code under test."""
import math

import numpy as np
import pytest
import torch

import anyup_dense.integrations.mmseg as integration
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

from anyup_dense.integrations.mmseg.depth_metric import AlignedDepthMetric


def normals_at_angles(angles, scale: float = 1.0) -> torch.Tensor:
    """[1,3,1,N] float64 vectors of length ``scale`` at the given angles (radians) from +z, in the x-z plane."""
    theta = torch.tensor(angles, dtype=torch.float64)
    return scale * torch.stack([theta.sin(), torch.zeros_like(theta), theta.cos()]).view(1, 3, 1, -1)


def plus_z(n: int) -> torch.Tensor:
    return normals_at_angles([0.0] * n)


# ---------------------------------------------------------------------------- angular loss

def test_angular_loss_is_the_mean_angle_over_valid_pixels():
    """Angles 0, 60, 90 and 135 degrees at valid pixels; a fifth pixel with a 180-degree
    error has no ground truth (zero vector) and must not count. The prediction's length must
    not matter. The eps clamp moves acos(1) to sqrt(2e-6) = 1.4e-3, so 1/4 of that is the
    largest deviation from the exact mean: tolerance 1e-3."""
    angles = [0.0, math.pi / 3, math.pi / 2, 3 * math.pi / 4, math.pi]
    pred = normals_at_angles(angles, scale=3.0)
    gt = plus_z(5)
    gt[..., 4] = 0.0
    expected = (0.0 + math.pi / 3 + math.pi / 2 + 3 * math.pi / 4) / 4
    assert integration.AngularLoss()(pred, gt).item() == pytest.approx(expected, abs=1e-3)
    assert integration.AngularLoss(loss_weight=2.5)(pred, gt).item() == pytest.approx(2.5 * expected, abs=2.5e-3)


def test_angular_loss_without_valid_pixels_is_zero_and_keeps_the_graph():
    pred = normals_at_angles([0.3, 1.0]).requires_grad_()
    loss = integration.AngularLoss()(pred, torch.zeros(1, 3, 1, 2, dtype=torch.float64))
    assert loss.item() == 0.0 and loss.requires_grad


def uncertainty_nll(theta: float, kappa_raw: float) -> float:
    """Bae et al. (2021) angular NLL with kappa = elu(raw) + 1.01, written out by hand."""
    kappa = kappa_raw + 1.0 if kappa_raw > 0 else math.exp(kappa_raw)  # elu(x) + 1
    kappa += 0.01
    return -math.log(kappa ** 2 + 1) + kappa * theta + math.log(1 + math.exp(-kappa * math.pi))


def test_uncertainty_aware_loss_values():
    """Three pixels with different kappa channels (raw -1, 0, 2: elu's both branches)."""
    angles, raw = [math.pi / 6, math.pi / 2, 2.0], [-1.0, 0.0, 2.0]
    pred = torch.cat([normals_at_angles(angles), torch.tensor(raw, dtype=torch.float64).view(1, 1, 1, 3)], dim=1)
    expected = sum(uncertainty_nll(a, r) for a, r in zip(angles, raw)) / 3
    assert integration.AngularLoss(uncertainty_aware=True)(pred, plus_z(3)).item() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("kappa_raw", [-0.5, 0.0, 3.0])
def test_uncertainty_aware_loss_is_a_normalised_density_on_the_sphere(kappa_raw):
    """exp(-loss) must be a probability density over directions: the integral over the
    sphere of exp(-L(theta)) / (2 pi), i.e. int_0^pi exp(-L) sin(theta) dtheta, is 1 for any
    kappa. Simpson's rule on 101 angles, one loss call per angle: measured |integral - 1|
    = 4.4e-6 at kappa 4.01 (1e-9 and 2e-8 at 0.62 and 1.01); tolerance 1e-5."""
    theta = torch.linspace(0.0, math.pi, 101, dtype=torch.float64)
    loss = integration.AngularLoss(uncertainty_aware=True)
    kappa = torch.full((1, 1, 1, theta.numel()), kappa_raw, dtype=torch.float64)
    pred = torch.cat([normals_at_angles(theta.tolist()), kappa], dim=1)
    nll = torch.stack([loss(pred[..., i:i + 1], plus_z(1)) for i in range(theta.numel())])
    simpson = torch.ones_like(theta)
    simpson[1:-1:2], simpson[2:-1:2] = 4.0, 2.0
    integral = (simpson * torch.exp(-nll) * theta.sin()).sum() * (theta[1] - theta[0]) / 3
    assert integral.item() == pytest.approx(1.0, abs=1e-5)


# ---------------------------------------------------------------------------- depth head

def depth_head(mode: str, in_channels: int, weight, bias, **kwargs):
    """A DepthProbeHead whose 1x1 conv has the given weight [out, in] and bias [out]."""
    init_default_scope("mmseg")
    head = MODELS.build(dict(type="DepthProbeHead", in_channels=in_channels, mode=mode, **kwargs)).double()
    with torch.no_grad():
        head.conv_seg.weight.copy_(torch.tensor(weight, dtype=torch.float64).view(-1, in_channels, 1, 1))
        head.conv_seg.bias.copy_(torch.tensor(bias, dtype=torch.float64))
    return head


def test_linear_depth_head_is_a_sigmoid_of_the_conv_times_max_depth():
    """logit = x0 - 2 x1 + 0.5; depth = 10 sigmoid(logit) at three pixels."""
    head = depth_head("linear", 2, [[1.0, -2.0]], [0.5], max_depth=10.0)
    features = torch.tensor([[0.0, 1.0, -3.0], [0.0, 2.0, 0.25]], dtype=torch.float64).view(1, 2, 1, 3)
    logits = [0.5, 1.0 - 4.0 + 0.5, -3.0 - 0.5 + 0.5]
    expected = [10.0 / (1.0 + math.exp(-z)) for z in logits]  # 6.2246, 0.7586, 0.4743
    torch.testing.assert_close(head((features,)).view(-1), torch.tensor(expected, dtype=torch.float64))


def test_binned_depth_head_is_the_mean_of_uniform_bin_centres():
    """Three bins with centres 1, 2, 3 m; logits (1, 0, -2) at pixel 0 and (0.5, 0.5, 2) at
    pixel 1 (identity conv). Weights ReLU(logit) + 0.1, normalised:
    pixel 0: (1.1, 0.1, 0.1) / 1.3 -> 1.6 / 1.3 m; pixel 1: (0.6, 0.6, 2.1) / 3.3 -> 8.1 / 3.3 m."""
    head = depth_head("bins", 3, torch.eye(3).tolist(), [0.0, 0.0, 0.0], num_bins=3, min_depth=1.0, max_depth=3.0,
                      bin_eps=0.1)
    features = torch.tensor([[1.0, 0.5], [0.0, 0.5], [-2.0, 2.0]], dtype=torch.float64).view(1, 3, 1, 2)
    torch.testing.assert_close(head((features,)).view(-1), torch.tensor([1.6 / 1.3, 8.1 / 3.3], dtype=torch.float64))


def test_depth_head_loss_is_silog_of_the_resized_prediction():
    """A constant 2 m prediction (linear head, zero weights, bias logit(0.2) with
    max_depth 10) at 2x2 is resized to the 4x4 label: still 2 m everywhere. The label is
    4 m on its top half, 1 m on the bottom half and 0 (invalid) in one pixel, so
    d = log(gt) - log(2) is +log 2 at 7 pixels and -log 2 at 8:
    SiLog = sqrt(mean(d^2) - 0.5 mean(d)^2) = log 2 * sqrt(1 - 0.5 / 15^2)."""
    head = depth_head("linear", 1, [[0.0]], [math.log(0.2 / 0.8)], max_depth=10.0)
    pred = head((torch.zeros(1, 1, 2, 2, dtype=torch.float64),))
    torch.testing.assert_close(pred, torch.full((1, 1, 2, 2), 2.0, dtype=torch.float64))
    gt = torch.ones(1, 4, 4, dtype=torch.float64)
    gt[:, :2] = 4.0
    gt[0, 0, 0] = 0.0
    sample = SegDataSample()
    sample.gt_depth_map = PixelData(data=gt)
    losses = head.loss_by_feat(pred, [sample])
    expected = math.log(2) * math.sqrt(1 - 0.5 / 15 ** 2)
    assert losses["loss_silog"].item() == pytest.approx(expected, rel=1e-6)


def test_depth_head_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mode must be 'linear' or 'bins', got 'log'"):
        integration.DepthProbeHead(in_channels=2, mode="log")


# ---------------------------------------------------------------------------- metrics

def test_aligned_depth_metric_clamps_the_fit_and_averages_images():
    """Image 1: gt (0.1, 0.1, 3.0), pred (0.2, 1.0, 2.0); its least-squares fit (numpy's
    polyfit, float64) is about (-0.375, 0.956, 2.620), the first value clamped at
    min_depth_eval = 0.05. Image 2: a perfect prediction (every error 0, d1 = 1). Each
    metric is the mean of the two images' values (not a mean over all pixels)."""
    gt, pred = np.array([0.1, 0.1, 3.0]), np.array([0.2, 1.0, 2.0])
    scale, shift = np.polyfit(pred, gt, 1)
    aligned = np.maximum(scale * pred + shift, 0.05)
    assert aligned[0] == 0.05  # the clamp is exercised

    def per_image(p):
        ratio = np.maximum(p / gt, gt / p)
        return dict(rmse=np.sqrt(np.mean((p - gt) ** 2)), abs_rel=np.mean(np.abs(p - gt) / gt),
                    d1=np.mean(ratio < 1.25), silog=np.sqrt(np.mean(np.log(p / gt) ** 2)
                                                             - 0.5 * np.mean(np.log(p / gt)) ** 2))

    metric = AlignedDepthMetric(min_depth_eval=0.05, max_depth_eval=10.0)
    perfect = torch.tensor([1.0, 2.0])
    values = metric.compute_metrics([(torch.tensor(gt, dtype=torch.float32), torch.tensor(pred, dtype=torch.float32)),
                                     (perfect, perfect.clone())])
    for suffix, first in (("", per_image(pred)), ("_aligned", per_image(aligned))):
        for key, value in first.items():
            perfect_value = 1.0 if key == "d1" else 0.0
            assert values[key + suffix] == pytest.approx((value + perfect_value) / 2, rel=1e-5, abs=1e-6), key + suffix
    assert values["d1"] == 0.5 and values["d1_aligned"] == pytest.approx(2 / 3)  # ratios (2, 10, 1.5), (2, 9.6, 1.15)


def normal_sample(pred: torch.Tensor, gt: torch.Tensor) -> dict:
    return dict(pred_normal_map=dict(data=pred), gt_normal_map=dict(data=gt))


def test_normal_metric_per_image_statistics_then_mean_over_images():
    """Image 1: errors 0, 10, 20, 40, 100 degrees (one extra pixel invalid); image 2:
    errors 5 and 25; image 3 has no valid pixel and is skipped. Per image: mean, median
    (torch's lower median for an even count), rmse and fractions under 11.25/22.5/30."""
    def image(angles_deg, invalid=0):
        pred = normals_at_angles([math.radians(a) for a in angles_deg] + [2.0] * invalid, scale=2.0)[0].float()
        gt = plus_z(len(angles_deg) + invalid)[0].float()
        if invalid:
            gt[..., -invalid:] = 0.0
        return normal_sample(pred, gt)

    first, second = [0.0, 10.0, 20.0, 40.0, 100.0], [5.0, 25.0]
    metric = integration.NormalMetric()
    metric.process({}, [image(first, invalid=1), image(second), image([], invalid=2)])
    result = metric.compute_metrics(metric.results)
    expected = {
        "mean": (sum(first) / 5 + sum(second) / 2) / 2,
        "median": (20.0 + 5.0) / 2,
        "rmse": (math.sqrt(sum(a * a for a in first) / 5) + math.sqrt(sum(a * a for a in second) / 2)) / 2,
        "a11.25": (2 / 5 + 1 / 2) / 2,
        "a22.5": (3 / 5 + 1 / 2) / 2,
        "a30": (3 / 5 + 2 / 2) / 2,
    }
    assert result.keys() == expected.keys()
    for key, value in expected.items():  # float32 acos near 0 degrees: ~0.03 degree
        assert result[key] == pytest.approx(value, abs=0.05), key


def test_normal_metric_without_any_valid_pixel_is_nan():
    metric = integration.NormalMetric()
    metric.process({}, [normal_sample(plus_z(2)[0].float(), torch.zeros(3, 1, 2))])
    assert all(math.isnan(v) for v in metric.compute_metrics(metric.results).values())


# ---------------------------------------------------------------------------- multi-stride neck

def resize_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """[n_out, n_in] float64 matrix of a triangle-filter (bilinear) resize on pixel centres:
    support widened by n_in / n_out when shrinking (antialiasing), weights renormalised over
    the taps inside the image (PIL's BILINEAR; F.interpolate(antialias=True) claims the same)."""
    scale = n_in / n_out
    support = max(scale, 1.0)
    centres = (torch.arange(n_out, dtype=torch.float64) + 0.5) * scale
    taps = torch.arange(n_in, dtype=torch.float64) + 0.5
    weights = (1 - ((taps[None] - centres[:, None]) / support).abs()).clamp(min=0)
    return weights / weights.sum(dim=1, keepdim=True)


def resize(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Separable resize of [B,C,h,w] by :func:`resize_matrix`, in float64."""
    rows, cols = resize_matrix(x.shape[-2], height), resize_matrix(x.shape[-1], width)
    return torch.einsum("yh,bchw,xw->bcyx", rows, x.double(), cols)


def test_resize_matrix_by_hand():
    """Shrinking by 2: taps (1, 3, 3, 1) / 8, renormalised at the borders; growing by 2:
    (0.75, 0.25) mixes of the nearest two centres, the border copies the edge value."""
    torch.testing.assert_close(resize_matrix(4, 2), torch.tensor([[3, 3, 1, 0], [0, 1, 3, 3]], dtype=torch.float64) / 7)
    torch.testing.assert_close(resize_matrix(2, 4), torch.tensor(
        [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]], dtype=torch.float64))


def neck(upsampler: str, out_strides, **kwargs):
    init_default_scope("mmseg")
    return MODELS.build(dict(type="UpsamplerNeck", upsampler=upsampler, out_strides=out_strides,
                             image_norm=dict(mean=[0.0] * 3, std=[1.0] * 3), **kwargs)).eval()


def test_bilinear_neck_maps_at_every_stride():
    """A 4x4 map, a 32x32 image, strides (2, 4, 8, 16): the finest map is the bilinear
    upsampling to 16x16, each coarser one the antialiased resize of the finest map (what the
    neck claims), all computed here by :func:`resize` in float64. float32: tolerance 1e-5."""
    features = torch.randn(2, 5, 4, 4)
    with torch.no_grad():
        maps = neck("bilinear", (2, 4, 8, 16))((features,), torch.rand(2, 3, 32, 32))
    finest = resize(features, 16, 16)
    for out, side in zip(maps, (16, 8, 4, 2)):
        torch.testing.assert_close(out.double(), resize(finest, side, side), atol=1e-5, rtol=1e-5)


def test_guided_neck_coarse_maps_are_resized_from_the_finest_map():
    """AnyUp (random weights) at strides (4, 8, 32) on a 36x52 image: 9x13, 4x6 and 1x1
    maps (floor of size / stride); the coarse ones are the antialiased resize of the 9x13
    map in float64 (tolerance 1e-5), i.e. the upsampler runs once, at the finest stride."""
    features, image = torch.randn(1, 8, 3, 4), torch.randn(1, 3, 36, 52)
    with torch.no_grad():
        maps = neck("anyup", (4, 8, 32), pretrained=None, qk_dim=16, num_heads=2)((features,), image)
    assert [tuple(m.shape[-2:]) for m in maps] == [(9, 13), (4, 6), (1, 1)]
    for out in maps[1:]:
        torch.testing.assert_close(out.double(), resize(maps[0], *out.shape[-2:]), atol=1e-5, rtol=1e-5)
