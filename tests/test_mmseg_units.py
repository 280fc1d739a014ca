"""Unit behaviour of the mmseg integration: necks (strides, normalisation, frozen/trainable),
guided segmentors (slide inference), heads, loss, metric, transforms, import guard."""
import importlib.util
import math
import pathlib

import numpy as np
import pytest

import anyup_dense.integrations.mmseg as integration  # noqa: E402
import torch  # noqa: E402
from mmengine import Config  # noqa: E402
from mmengine.optim import OptimWrapper  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmseg.registry import MODELS  # noqa: E402

from anyup_dense.backbones.featurizer import backbone_featurizer  # noqa: E402
from anyup_dense.integrations.mmseg.guidance import ToImageNet  # noqa: E402
from anyup_dense.integrations.mmseg.transforms import ResizeCenterCrop, decode_normals, encode_normals  # noqa: E402
from mmseg_helpers import batch  # noqa: E402

CONFIG = (pathlib.Path(__file__).resolve().parents[1] / "configs" / "mmseg" / "linear_probe"
          / "anyup_vit-s14-dinov2_linear-probe_ade20k-151_448x448.py")
SIZE = 56
TINY_BACKBONE = dict(model_name="vit_small_patch14_dinov2", pretrained=None, img_size=SIZE, depth=2, embed_dim=32,
                     num_heads=2)


def tiny_segmentor(**neck) -> torch.nn.Module:
    cfg = Config.fromfile(str(CONFIG))
    cfg.merge_from_dict({"model.backbone": TINY_BACKBONE, "model.decode_head.in_channels": 32,
                         "model.decode_head.num_classes": 4, "model.neck.pretrained": None, "model.neck.qk_dim": 16,
                         **{f"model.neck.{k}": v for k, v in neck.items()}})
    init_default_scope("mmseg")
    return MODELS.build(cfg.model)


def train_steps(model: torch.nn.Module, steps: int = 3) -> None:
    params = [p for p in model.parameters() if p.requires_grad]
    wrapper = OptimWrapper(torch.optim.AdamW(params, lr=1e-2, weight_decay=1e-2))
    model.train()
    for _ in range(steps):
        model.train_step(batch(), wrapper)


def test_frozen_upsampler_gets_no_grad_and_stays_bit_identical():
    model = tiny_segmentor(frozen=True)
    upsampler = model.neck.upsampler
    before = {k: v.clone() for k, v in upsampler.state_dict().items()}
    head_before = model.decode_head.conv_seg.weight.clone()
    train_steps(model)
    assert not upsampler.training and not model.backbone.training
    assert all(not p.requires_grad and p.grad is None for p in upsampler.parameters())
    assert all(torch.equal(before[k], v) for k, v in upsampler.state_dict().items())
    assert not torch.equal(head_before, model.decode_head.conv_seg.weight)


@pytest.mark.slow
def test_trainable_upsampler_is_updated():
    model = tiny_segmentor(frozen=False)
    upsampler = model.neck.upsampler
    before = {k: v.clone() for k, v in upsampler.named_parameters()}
    train_steps(model)
    assert upsampler.training
    changed = [k for k, v in upsampler.named_parameters() if not torch.equal(before[k], v)]
    assert len(changed) > len(before) // 2, changed
    assert all(p.requires_grad for p in upsampler.parameters())


def test_multi_stride_neck_outputs_and_channels():
    model = tiny_segmentor(out_strides=(4, 8, 16, 32)).eval()
    with torch.no_grad():
        maps = model.extract_feat(torch.randn(2, 3, 112, 112))
    assert [tuple(m.shape) for m in maps] == [(2, 32, 28, 28), (2, 32, 14, 14), (2, 32, 7, 7), (2, 32, 3, 3)]


@pytest.mark.slow
def test_slide_inference_guides_every_crop():
    model = tiny_segmentor().eval()
    model.test_cfg = Config(dict(mode="slide", crop_size=(SIZE, SIZE), stride=(28, 28)))
    seen = []
    model.neck.register_forward_hook(lambda module, args, kwargs, out: seen.append(kwargs["image"].shape),
                                     with_kwargs=True)
    data = model.data_preprocessor(batch(1, SIZE, 84), training=False)
    with torch.no_grad():
        result = model.predict(data["inputs"], data["data_samples"])
    assert result[0].pred_sem_seg.data.shape == (1, SIZE, 84)
    assert seen == [torch.Size([1, 3, SIZE, SIZE])] * 2  # crops at x = 0 and x = 28


def test_image_norm_conversion():
    default = ToImageNet([123.675, 116.28, 103.53], [58.395, 57.12, 57.375])
    x = torch.randn(1, 3, 4, 4)
    torch.testing.assert_close(default(x), x, atol=1e-6, rtol=1e-6)
    half = ToImageNet([127.5] * 3, [127.5] * 3)  # CLIP/augreg-style (x/255 - 0.5) / 0.5
    rgb = torch.rand(1, 3, 4, 4)
    imagenet = (rgb - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(half((rgb - 0.5) / 0.5), imagenet, atol=1e-5, rtol=1e-5)


def test_featurizer_renormalises_crops_for_the_backbone():
    class Recorder(torch.nn.Module):
        mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)

        def forward(self, x):
            self.seen = x
            return (x[:, :1], x)

    backbone = Recorder()
    rgb = torch.rand(2, 3, 8, 8)
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    out = backbone_featurizer(backbone, -1)((rgb - mean) / std)
    torch.testing.assert_close(out, (rgb - 0.5) / 0.5, atol=1e-5, rtol=1e-5)


def test_normal_metric_on_known_errors():
    metric = integration.NormalMetric()
    gt = torch.zeros(3, 2, 4)
    gt[2] = 1.0  # all normals +z
    pred = gt.clone()
    pred[:, 1] = torch.tensor([1.0, 0.0, 0.0]).view(3, 1)  # second row: 90 degrees off
    gt[:, 0, 0] = 0.0  # one invalid pixel (ignored)
    metric.process({}, [dict(pred_normal_map=dict(data=pred), gt_normal_map=dict(data=gt))])
    result = metric.compute_metrics(metric.results)
    assert result["mean"] == pytest.approx(90 * 4 / 7, abs=1e-3)
    assert result["rmse"] == pytest.approx(math.sqrt(90 ** 2 * 4 / 7), abs=1e-3)
    assert result["a11.25"] == result["a30"] == pytest.approx(3 / 7)


def test_angular_loss_zero_when_exact_and_ignores_invalid():
    loss = integration.AngularLoss()
    gt = torch.nn.functional.normalize(torch.randn(1, 3, 4, 4), dim=1)
    assert loss(gt * 3.0, gt).item() < 1e-2
    invalid = gt.clone()
    invalid[..., :2] = 0.0
    pred = gt.clone()
    pred[..., :2] = -gt[..., :2]  # wrong only where gt is invalid
    assert loss(pred, invalid).item() < 1e-2
    kappa = integration.AngularLoss(uncertainty_aware=True)
    assert torch.isfinite(kappa(torch.cat([gt, torch.zeros(1, 1, 4, 4)], dim=1), gt))


def test_depth_bins_head_predicts_inside_range():
    init_default_scope("mmseg")
    head = MODELS.build(dict(type="DepthProbeHead", in_channels=8, mode="bins", num_bins=16, min_depth=0.5,
                             max_depth=4.0))
    depth = head((torch.randn(2, 8, 5, 5) * 10,))
    assert depth.shape == (2, 1, 5, 5) and depth.min() >= 0.5 and depth.max() <= 4.0


def test_resize_center_crop_keeps_label_values_and_sets_shapes():
    label = np.repeat(np.arange(10, dtype=np.uint8)[None], 6, axis=0)  # 6 x 10, values 0..9
    normals = encode_normals(np.tile([0.0, 0.0, 1.0], (6, 10, 1)), np.ones((6, 10), bool))
    results = dict(img=np.zeros((6, 10, 3), np.uint8), gt_seg_map=label, gt_normal_map=decode_normals(normals),
                   seg_fields=["gt_seg_map", "gt_normal_map"], ori_shape=(6, 10))
    out = ResizeCenterCrop(4).transform(results)
    assert out["img"].shape == (4, 4, 3) and out["gt_seg_map"].shape == (4, 4) and out["gt_normal_map"].shape == (4, 4, 3)
    assert out["img_shape"] == out["ori_shape"] == (4, 4)
    assert set(np.unique(out["gt_seg_map"])) <= set(range(10)) and out["gt_seg_map"][0, 0] > 0  # centre crop
    np.testing.assert_allclose(out["gt_normal_map"][..., 2], 1.0, atol=1e-2)


def test_missing_mmseg_is_named(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mmseg" else real(name, *a))
    with pytest.raises(ImportError, match="mmsegmentation"):
        integration._check_installed()


@pytest.mark.slow
def test_segmentor_memory_tool_reports_a_full_resolution_forward(capsys):
    from helpers import load_tool

    result = load_tool("segmentor_memory").main(["--size", "56", "--backbone", "vit_small_patch14_dinov2"])
    assert result["output"] == (1, 150, 56, 56)
    assert result["peak_mib"] > result["forward_mib"] >= 0 and result["seconds"] > 0
    assert "AnyUpNeck 56x56" in capsys.readouterr().out


def test_scale_and_shift_alignment_is_the_least_squares_fit():
    from anyup_dense.integrations.mmseg.depth_metric import align_scale_and_shift

    torch.manual_seed(0)
    gt = torch.rand(50) * 5 + 0.5
    pred = 0.3 * gt - 0.2 + 0.05 * torch.randn(50)
    design = torch.stack([pred.double(), torch.ones(50, dtype=torch.float64)], dim=1)
    scale, shift = torch.linalg.lstsq(design, gt.double()[:, None]).solution[:, 0]
    assert torch.allclose(align_scale_and_shift(pred, gt).double(), scale * pred.double() + shift, atol=1e-6)
    constant = align_scale_and_shift(torch.full((5,), 2.0), torch.arange(1.0, 6.0))
    assert torch.allclose(constant, torch.full((5,), 3.0))


def test_aligned_depth_metric_values():
    """Two images: an exact affine prediction (aligned error 0) and a perfect one."""
    from anyup_dense.integrations.mmseg.depth_metric import AlignedDepthMetric

    gt = torch.tensor([1.0, 2.0, 3.0, 4.0])
    metric = AlignedDepthMetric(min_depth_eval=1e-3, max_depth_eval=10.0)
    values = metric.compute_metrics([(gt, 0.5 * gt + 1.0), (gt, gt.clone())])
    abs_rmse_first = torch.sqrt(((0.5 * gt + 1.0 - gt) ** 2).mean()).item()
    assert values["rmse"] == pytest.approx(abs_rmse_first / 2)
    assert values["rmse_aligned"] == pytest.approx(0.0, abs=1e-6)
    assert values["d1_aligned"] == pytest.approx(1.0)
    first_d1 = (torch.maximum(gt / (0.5 * gt + 1), (0.5 * gt + 1) / gt) < 1.25).float().mean().item()
    assert values["d1"] == pytest.approx((first_d1 + 1.0) / 2)
