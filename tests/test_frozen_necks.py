"""A frozen neck freezes the upsampler's weights, not the graph: a trainable backbone behind
it is trained by a real mmengine Runner while the upsampler stays bit-identical."""
import pytest
import torch
from mmengine.runner import Runner

import anyup_dense.integrations.mmseg  # noqa: F401
from mmseg_helpers import CONFIGS, tiny_config


@pytest.mark.slow
@pytest.mark.parametrize("neck", ["bilinear", "anyup", "featup", "featsharp"])
def test_trainable_backbone_learns_through_frozen_neck(neck, synthetic_root, tmp_path):
    config = CONFIGS / "linear_probe" / f"{neck}_vit-s14-dinov2_linear-probe_ade20k-151_448x448.py"
    cfg = tiny_config(config, synthetic_root, tmp_path, neck, epochs=1)
    cfg.merge_from_dict({"model.backbone.frozen": False, "train_cfg.val_interval": 2})
    runner = Runner.from_cfg(cfg)
    model = runner.model
    assert model.neck.frozen and not any(p.requires_grad for p in model.neck.upsampler.parameters())
    backbone_before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    upsampler_before = {k: v.clone() for k, v in model.neck.upsampler.state_dict().items()}

    runner.train()

    moved = [k for k, v in model.backbone.state_dict().items() if not torch.equal(v, backbone_before[k])]
    # Every block's weights moved: the only path from the loss to the backbone is the neck.
    assert any(k.startswith("model.blocks.0.") for k in moved), moved
    assert any(k.startswith("model.blocks.1.") for k in moved), moved
    for key, value in model.neck.upsampler.state_dict().items():
        assert torch.equal(value, upsampler_before[key]), key
    assert not model.neck.upsampler.training


def test_frozen_neck_passes_exact_gradient_to_features():
    """d(loss)/d(features) through a frozen AnyUp neck equals autograd through the same
    upsampler called directly (float64), so nothing is cut or rescaled."""
    from mmseg.registry import MODELS

    neck = MODELS.build(dict(type="AnyUpNeck", pretrained=None, qk_dim=16)).double()
    features = torch.randn(1, 8, 4, 5, dtype=torch.float64, requires_grad=True)
    image = torch.randn(1, 3, 20, 25, dtype=torch.float64) * 50 + 120
    (out,) = neck([features], image)
    (grad,) = torch.autograd.grad(out.square().sum(), features)
    expected_out = neck.upsampler(features, neck.to_imagenet(image), (20, 25))
    (expected,) = torch.autograd.grad(expected_out.square().sum(), features)
    assert grad.abs().max() > 0
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=0)
