"""Unit tests of the Detectron2 backbone pieces: shapes, normalisation, frozen switch, lr decay."""
import sys

import pytest
import torch

from detectron2_helpers import TINY_VIT, d2

from anyup_dense import build_upsampler
from anyup_dense.backbones import TimmViT
from anyup_dense.imaging import IMAGENET_MEAN, IMAGENET_STD
from anyup_dense.upsamplers.base import Upsampler

D2_MEAN_BGR, D2_STD_BGR = (103.53, 116.28, 123.675), (57.375, 57.12, 58.395)


def tiny_backbone(upsampler=None, factor=1, upsampler_frozen=True, vit_frozen=True, depth=2, **kwargs):
    vit = TimmViT("vit_small_patch14_dinov2", frozen=vit_frozen, **{**TINY_VIT, "depth": depth})
    if isinstance(upsampler, str):
        upsampler = build_upsampler(upsampler, **({"qk_dim": 16} if upsampler == "anyup" else {}))
    return d2.UpsampledViTBackbone(vit, upsampler, factor, upsampler_frozen=upsampler_frozen, out_channels=16,
                                   **kwargs)


@pytest.mark.parametrize("upsampler,factor", [(None, 1), ("bilinear", 2), ("anyup", 2), ("bilinear", 4)])
@pytest.mark.parametrize("levels,top_block,names", [
    ((2, 3, 4, 5), "maxpool", ["p2", "p3", "p4", "p5", "p6"]),
    ((3, 4, 5), "p6p7", ["p3", "p4", "p5", "p6", "p7"]),
])
def test_output_shape_matches_real_outputs(upsampler, factor, levels, top_block, names):
    backbone = tiny_backbone(upsampler, factor, levels=levels, top_block=top_block)
    x = torch.randn(2, 3, 64, 96)
    outputs = backbone(x)
    shapes = backbone.output_shape()
    assert list(outputs) == list(shapes) == names
    assert backbone.size_divisibility == 32
    for name, tensor in outputs.items():
        stride = shapes[name].stride
        assert stride == 2 ** int(name[1:])
        assert tuple(tensor.shape) == (2, shapes[name].channels, -(-64 // stride), -(-96 // stride)), name


def test_upsampler_sees_the_factor_and_imagenet_guidance():
    """The upsampler gets the ViT map, output size factor x the grid, and the image in ImageNet norm."""
    calls = {}

    class Recorder(Upsampler):
        def upsample(self, features, image, output_size):
            calls.update(features=features.shape, image=image, size=output_size)
            return torch.nn.functional.interpolate(features, size=output_size)

    backbone = tiny_backbone(Recorder(), 4, pixel_mean=D2_MEAN_BGR, pixel_std=D2_STD_BGR, input_format="BGR")
    rgb01 = torch.rand(1, 3, 64, 80)
    d2_input = (rgb01.flip(1) * 255 - torch.tensor(D2_MEAN_BGR).view(1, 3, 1, 1)) / torch.tensor(D2_STD_BGR).view(1, 3, 1, 1)
    backbone(d2_input)
    expected = (rgb01 - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert calls["features"] == (1, 32, 4, 5)
    assert calls["size"] == (16, 20)
    torch.testing.assert_close(calls["image"], expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fmt", ["RGB", "BGR"])
def test_renormalize_to_vit_normalisation(fmt):
    mean, std, dst_mean, dst_std = (10.0, 20.0, 30.0), (2.0, 3.0, 4.0), (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    rgb255 = torch.rand(2, 3, 5, 7) * 255
    pixels = rgb255.flip(1) if fmt == "BGR" else rgb255
    x = (pixels - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    out = d2.Renormalize(mean, std, dst_mean, dst_std, src_format=fmt, src_scale=255.0)(x)
    expected = (rgb255 / 255 - torch.tensor(dst_mean).view(1, 3, 1, 1)) / torch.tensor(dst_std).view(1, 3, 1, 1)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_featurizer_is_passed_to_upsamplers_that_ask_for_it():
    seen = {}

    class NeedsFeaturizer(Upsampler):
        requires_featurizer = True
        model_resolution = 42

        def forward(self, features, image, output_size=None, featurizer=None):
            seen.update(features=features.shape, tiles=featurizer(image[:, :, :28, :28]).shape, size=output_size)
            return torch.nn.functional.interpolate(features, size=output_size)

    outputs = tiny_backbone(NeedsFeaturizer(), 2)(torch.randn(1, 3, 64, 80))
    assert seen == {"features": (1, 32, 3, 3), "tiles": (1, 32, 2, 2), "size": (8, 10)}
    assert outputs["p3"].shape[-2:] == (8, 10)


def test_frozen_upsampler_gets_no_grad_and_stays_in_eval():
    backbone = tiny_backbone("anyup", 2, vit_frozen=False)
    backbone.train()
    assert not backbone.upsampler.training and backbone.pyramid.training
    assert not any(p.requires_grad for p in backbone.upsampler.parameters())
    sum(v.sum() for v in backbone(torch.randn(1, 3, 64, 64)).values()).backward()
    assert all(p.grad is None for p in backbone.upsampler.parameters())
    assert backbone.vit.model.blocks[0].attn.qkv.weight.grad is not None  # gradients flow through it


def test_trainable_upsampler_gets_grad():
    backbone = tiny_backbone("anyup", 2, upsampler_frozen=False)
    backbone.train()
    assert backbone.upsampler.training
    sum(v.sum() for v in backbone(torch.randn(1, 3, 64, 64)).values()).backward()
    assert all(p.requires_grad for p in backbone.upsampler.parameters())
    # AnyUp's attention V rows and out_proj do not affect its output (see anyup.py); the rest learn
    for p in [*backbone.upsampler.image_encoder.parameters(), *backbone.upsampler.key_features_encoder.parameters()]:
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="needs an upsampler"):
        tiny_backbone(None, 2)
    with pytest.raises(ValueError, match="must divide vit_stride"):
        tiny_backbone("bilinear", 3)
    with pytest.raises(ValueError, match="divisible by vit_stride"):
        tiny_backbone()(torch.randn(1, 3, 64, 40))


def test_layer_decay_multipliers_per_block():
    depth, decay = 3, 0.5
    backbone = tiny_backbone("anyup", 2, upsampler_frozen=False, vit_frozen=False, depth=depth)
    groups = d2.layer_decay_param_groups(backbone, base_lr=2.0, weight_decay=0.1, layer_decay=decay)
    lr = {p: g["lr"] for g in groups for p in g["params"]}
    wd = {p: g["weight_decay"] for g in groups for p in g["params"]}
    vit = backbone.vit.model
    assert len(lr) == sum(1 for p in backbone.parameters() if p.requires_grad)
    for i, block in enumerate(vit.blocks):
        for p in block.parameters():
            assert lr[p] == pytest.approx(2.0 * decay ** (depth - i))
    for p in (vit.pos_embed, vit.cls_token, vit.patch_embed.proj.weight):
        assert lr[p] == pytest.approx(2.0 * decay ** (depth + 1))
    for p in [vit.norm.weight, *backbone.pyramid.parameters(), *backbone.upsampler.parameters()]:
        assert lr[p] == 2.0
    assert wd[vit.pos_embed] == wd[vit.cls_token] == wd[vit.norm.weight] == wd[vit.blocks[0].norm1.weight] == 0.0
    assert wd[vit.blocks[0].attn.qkv.weight] == 0.1


def test_layer_decay_skips_frozen_vit_and_survives_the_lr_scheduler():
    from detectron2.config import get_cfg
    from detectron2.solver import build_lr_scheduler

    backbone = tiny_backbone(vit_frozen=True)
    groups = d2.layer_decay_param_groups(backbone, base_lr=1.0, weight_decay=0.0, layer_decay=0.5)
    assert not any(p is q for g in groups for p in g["params"] for q in backbone.vit.parameters())

    trained = tiny_backbone(vit_frozen=False, depth=2)
    cfg = d2.add_anyup_config(get_cfg())
    cfg.SOLVER.merge_from_list(["OPTIMIZER", "ADAMW", "VIT_LAYER_DECAY", 0.5, "BASE_LR", 0.1, "WARMUP_ITERS", 0])
    optimizer = d2.build_optimizer(cfg, trained)
    assert isinstance(optimizer, torch.optim.AdamW)
    scheduler = build_lr_scheduler(cfg, optimizer)
    optimizer.step()  # no gradients: nothing moves, but the scheduler sees the order torch expects
    scheduler.step()
    ratios = sorted({round(g["lr"] / 0.1, 6) for g in optimizer.param_groups})
    assert ratios == [0.125, 0.25, 0.5, 1.0]


def test_missing_detectron2_gives_a_clear_error(monkeypatch):
    for name in [m for m in sys.modules if m.startswith("anyup_dense.integrations.detectron2")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "detectron2", None)
    with pytest.raises(ImportError, match="needs the 'detectron2' package"):
        import anyup_dense.integrations.detectron2  # noqa: F401


SOLVER_KEYS = ["OPTIMIZER", "ADAMW", "BASE_LR", 2.0, "WEIGHT_DECAY", 0.1, "WEIGHT_DECAY_NORM", 0.01,
               "BIAS_LR_FACTOR", 3.0, "VIT_LAYER_DECAY", 0.5, "WARMUP_ITERS", 0]


def _hyper(optimizer):
    """{param: (lr, weight_decay)} of an optimizer's groups."""
    return {p: (g["lr"], g["weight_decay"]) for g in optimizer.param_groups for p in g["params"]}


@pytest.mark.parametrize("weight_decay_bias", [0.0, None])
def test_optimizer_honours_detectron2_solver_keys_with_layer_decay(weight_decay_bias):
    """lr = BASE_LR (x BIAS_LR_FACTOR for biases) x the ViT layer multiplier; weight decay:
    WEIGHT_DECAY_BIAS for biases when set, else WEIGHT_DECAY_NORM in norm layers (incl.
    LayerNorm2d and RMSNorm), 0 for position embeddings, else WEIGHT_DECAY."""
    from detectron2.config import get_cfg

    depth, base, decay = 3, 2.0, 0.5
    backbone = tiny_backbone("anyup", 2, upsampler_frozen=False, vit_frozen=False, depth=depth)
    cfg = d2.add_anyup_config(get_cfg())
    cfg.SOLVER.merge_from_list([*SOLVER_KEYS, "WEIGHT_DECAY_BIAS", weight_decay_bias])
    hyper = _hyper(d2.build_optimizer(cfg, backbone))
    bias_wd = 0.1 if weight_decay_bias is None else weight_decay_bias
    norm_bias_wd = 0.01 if weight_decay_bias is None else weight_decay_bias
    vit = backbone.vit.model
    expected = {
        vit.pos_embed: (base * decay ** 4, 0.0),
        vit.patch_embed.proj.weight: (base * decay ** 4, 0.1),
        vit.patch_embed.proj.bias: (3 * base * decay ** 4, bias_wd),
        vit.blocks[0].attn.qkv.weight: (base * decay ** 3, 0.1),
        vit.blocks[0].attn.qkv.bias: (3 * base * decay ** 3, bias_wd),
        vit.blocks[0].norm1.weight: (base * decay ** 3, 0.01),
        vit.blocks[0].norm1.bias: (3 * base * decay ** 3, norm_bias_wd),
        vit.blocks[2].mlp.fc2.weight: (base * decay, 0.1),
        vit.blocks[2].mlp.fc2.bias: (3 * base * decay, bias_wd),
        vit.norm.weight: (base, 0.01),
        backbone.pyramid.stages.p2[1].weight: (base, 0.1),                # 1x1 conv, no bias with a norm
        backbone.pyramid.stages.p2[1].norm.weight: (base, 0.01),          # LayerNorm2d
        backbone.pyramid.stages.p2[1].norm.bias: (3 * base, norm_bias_wd),
        backbone.upsampler.cross_decode.cross_attn.norm_q.weight: (base, 0.01),  # RMSNorm
    }
    for param, (lr, wd) in expected.items():
        assert hyper[param] == (pytest.approx(lr, rel=1e-12), wd)
    assert len(hyper) == sum(1 for p in backbone.parameters() if p.requires_grad)


def test_optimizer_without_layer_decay_matches_detectron2_build_optimizer():
    """With VIT_LAYER_DECAY 1 our groups equal Detectron2's own build_optimizer, except where
    ours adds rules: norm layers it does not know, position embeddings and tokens."""
    from detectron2.config import get_cfg
    from detectron2.solver import build_optimizer as d2_build_optimizer

    backbone = tiny_backbone("anyup", 2, upsampler_frozen=False, vit_frozen=False)
    cfg = d2.add_anyup_config(get_cfg())
    cfg.SOLVER.merge_from_list(["OPTIMIZER", "SGD", "BASE_LR", 2.0, "WEIGHT_DECAY", 0.1, "WEIGHT_DECAY_NORM", 0.01,
                                "BIAS_LR_FACTOR", 3.0, "WEIGHT_DECAY_BIAS", 0.02])
    ours, theirs = _hyper(d2.build_optimizer(cfg, backbone)), _hyper(d2_build_optimizer(cfg, backbone))
    extra = {p for m in backbone.modules() if isinstance(m, d2.lr_decay.EXTRA_NORM_TYPES)
             for name, p in m.named_parameters(recurse=False) if name != "bias"}
    extra |= {backbone.vit.model.pos_embed, backbone.vit.model.cls_token}
    assert set(ours) == set(theirs)
    differing = {p for p in ours if ours[p] != theirs[p]}
    assert differing == extra
    assert all(ours[p][1] == (0.0 if p.dim() == 3 else 0.01) for p in extra)


@pytest.mark.parametrize("size", [(16, 64), (64, 16), (32, 16)])
def test_input_below_minimum_size_is_refused(size):
    backbone = tiny_backbone("bilinear", 2)
    with pytest.raises(ValueError, match=rf"input size {size[0]}x{size[1]} is below the backbone's minimum of 32 px "
                                         r"per side \(vit_stride 16; pyramid level p5 has stride 32\)"):
        backbone(torch.randn(1, 3, *size))
    assert set(backbone(torch.randn(1, 3, 32, 32))) == {"p2", "p3", "p4", "p5", "p6"}  # the minimum works


def test_upsampler_that_does_not_fit_the_vit_is_refused_when_built():
    from anyup_dense.upsamplers.featsharp import FeatSharp

    with pytest.raises(ValueError, match=r"FeatSharp takes 48-channel features \(its dim\) but the ViT "
                                         r"vit_small_patch14_dinov2 gives 32; set the upsampler's dim to 32"):
        tiny_backbone(FeatSharp(48, model_resolution=56), 2)
    with pytest.raises(ValueError, match=r"FeatSharp takes a 7x7 feature grid at model_resolution=56 \(patch_size 8\), "
                                         r"but the ViT vit_small_patch14_dinov2 has patch size 14; set the "
                                         r"upsampler's patch_size to 14"):
        tiny_backbone(FeatSharp(32, model_resolution=56, patch_size=8), 2)
    with pytest.raises(ValueError, match="upsampler must be an nn.Module or None, got 'bilinear'"):
        d2.UpsampledViTBackbone(TimmViT("vit_small_patch14_dinov2", **TINY_VIT), "bilinear", 2)
