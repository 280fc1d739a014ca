"""The shared parts (anyup_dense.imaging, anyup_dense.freezing) and the layers kept in the core
because the upsamplers import with torch alone: each checked by hand-computed values or against
the maintained library part it stands for (timm, torchvision)."""
import copy
import io

import pytest
import timm.layers
import torch
import torch.nn as nn
import torchvision.transforms.v2.functional as TF

from anyup_dense.freezing import freeze, is_frozen
from anyup_dense.imaging import (IMAGENET_MEAN, IMAGENET_STD, Renormalize, center_crop_geometry, denormalize,
                                 imagenet_normalize, normalize, resize_center_crop)
from anyup_dense.upsamplers.channel_norm import ChannelNorm, LayerNorm2d
from anyup_dense.upsamplers.featsharp_fusion import LayerScale


# --- imaging -------------------------------------------------------------------------------------

def test_imagenet_normalize_hand_values():
    """The pixel (mean + std) maps to 1 in every channel, the pixel mean to 0, black to -mean/std."""
    pixels = torch.tensor([[m + s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)], list(IMAGENET_MEAN), [0.0] * 3],
                          dtype=torch.float64).T.reshape(1, 3, 1, 3)
    out = imagenet_normalize(pixels)
    expected = torch.tensor([[1.0, 0.0, -0.485 / 0.229], [1.0, 0.0, -0.456 / 0.224], [1.0, 0.0, -0.406 / 0.225]],
                            dtype=torch.float64).reshape(1, 3, 1, 3)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-15)
    assert out.dtype == torch.float64


def test_normalize_and_denormalize_are_inverse_and_exact_per_dtype():
    """[3,H,W] and [B,3,H,W]; the arithmetic is (x - m) / s and x * s + m in the input dtype."""
    x = torch.rand(2, 3, 4, 5)
    mean, std = (0.5, 0.25, 0.125), (0.5, 2.0, 4.0)  # powers of two: float32 results are exact
    y = normalize(x, mean, std)
    assert torch.equal(y[:, 1], (x[:, 1] - 0.25) / 2.0)
    assert torch.equal(denormalize(y, mean, std), x)
    assert torch.equal(normalize(x[0], mean, std), y[0])


def test_renormalize_detectron2_bgr_to_imagenet():
    """BGR 0..255 with Detectron2's default PIXEL_MEAN/STD -> ImageNet RGB in 0..1: an ImageNet
    pixel (mean + std) * 255 in BGR order gives 1 in every channel (float32, 2e-6 measured 4.8e-7)."""
    to_imagenet = Renormalize([103.530, 116.280, 123.675], [57.375, 57.120, 58.395], IMAGENET_MEAN, IMAGENET_STD,
                              src_format="BGR", src_scale=255.0)
    rgb255 = torch.tensor([255 * (m + s) for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)])
    bgr_in = ((rgb255.flip(0) - torch.tensor([103.530, 116.280, 123.675])) / torch.tensor([57.375, 57.120, 58.395]))
    out = to_imagenet(bgr_in.view(1, 3, 1, 1))
    torch.testing.assert_close(out, torch.ones(1, 3, 1, 1), rtol=0, atol=2e-6)
    assert to_imagenet.state_dict() == {}  # constants stay out of checkpoints


@pytest.mark.parametrize("kwargs, message", [
    (dict(src_format="YUV"), r"src_format must be one of \('RGB', 'BGR'\), got 'YUV'"),
    (dict(src_mean=[0.5, 0.5]), r"src_mean must have 3 values \(one per channel\), got \[0.5, 0.5\]"),
])
def test_renormalize_rejects_bad_arguments(kwargs, message):
    args = {**dict(src_mean=[0.0] * 3, src_std=[1.0] * 3, dst_mean=IMAGENET_MEAN, dst_std=IMAGENET_STD), **kwargs}
    with pytest.raises(ValueError, match=message):
        Renormalize(**args)


@pytest.mark.parametrize("height, width, size, expected", [
    (480, 640, 224, (224, 299, 0, 37)),   # 640 * 224 / 480 = 298.67 -> 299; (299 - 224) // 2 = 37
    (640, 480, 224, (299, 224, 37, 0)),
    (300, 300, 224, (224, 224, 0, 0)),
    (100, 1001, 50, (50, 500, 0, 225)),    # 1001 / 2 = 500.5 -> round half to even: 500
])
def test_center_crop_geometry_hand_values(height, width, size, expected):
    assert center_crop_geometry(height, width, size) == expected


def test_center_crop_geometry_rejects_bad_sizes():
    with pytest.raises(ValueError, match="size must be a positive int, got 0"):
        center_crop_geometry(10, 10, 0)


def test_resize_center_crop_crops_the_centre_and_scales_uint8():
    """A uint8 2x4 image whose shorter side is already ``size``: no resampling (bilinear to the same
    size is the identity), columns 1..2 kept, values / 255. A 4x8 ramp 0.0, 0.1, ..., 0.7 along
    the width, halved: the antialiased bilinear filter has taps 1/4, 3/4, 3/4, 1/4 (sum 2), so
    the kept columns 1 and 2 are (0.025 + 0.15 + 0.225 + 0.1) / 2 = 0.25 and 0.45 (1e-6)."""
    image = torch.tensor([[0, 51, 102, 153], [204, 255, 0, 51]], dtype=torch.uint8).expand(3, 2, 4)
    out = resize_center_crop(image, 2)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, image[:, :, 1:3].float() / 255, rtol=0, atol=0)
    ramp = torch.arange(8.0).div(10).expand(3, 4, 8)
    torch.testing.assert_close(resize_center_crop(ramp, 2), torch.tensor([0.25, 0.45]).expand(3, 2, 2),
                               rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="mode must be 'bilinear' or 'bicubic', got 'nearest'"):
        resize_center_crop(ramp, 2, mode="nearest")


# --- freezing ------------------------------------------------------------------------------------

def test_frozen_child_stays_in_eval_through_the_parent_and_copies():
    parent = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.Dropout(0.5), nn.BatchNorm1d(4)))
    assert freeze(parent[1]) is parent[1]
    parent.train()
    assert parent.training and parent[0].training
    assert not parent[1].training and not parent[1][0].training and not parent[1][1].training
    assert not any(p.requires_grad for p in parent[1].parameters()) and parent[0].weight.requires_grad
    x = torch.randn(3, 4)
    assert torch.equal(parent[1](x), parent[1](x))  # no dropout, running statistics unchanged
    assert torch.equal(parent[1][1].running_mean, torch.zeros(4))
    buffer = io.BytesIO()
    torch.save(parent, buffer)
    buffer.seek(0)
    for clone in (copy.deepcopy(parent), torch.load(buffer, weights_only=False)):
        clone.train()
        assert is_frozen(clone[1]) and not clone[1][1].training and clone[0].training
    assert not is_frozen(parent[0])


def test_freeze_rejects_non_modules():
    with pytest.raises(ValueError, match="module must be a torch.nn.Module, got Tensor"):
        freeze(torch.zeros(1))


# --- core layers that stand for timm's ------------------------------------------------------------

def test_layer_norm_2d_is_timms():
    """Same keys, eps and numbers (bitwise) as timm.layers.LayerNorm2d; a float64 formula agrees to
    2e-6 (measured 7e-7 on values of scale 3)."""
    ours, theirs = LayerNorm2d(16), timm.layers.LayerNorm2d(16)
    nn.init.normal_(ours.weight), nn.init.normal_(ours.bias)
    theirs.load_state_dict(ours.state_dict())
    assert sorted(ours.state_dict()) == ["bias", "weight"] and ours.eps == theirs.eps == 1e-6
    x = torch.randn(2, 16, 5, 7) * 3 + 1
    assert torch.equal(ours(x), theirs(x))
    xd = x.double()
    mean, var = xd.mean(1, keepdim=True), xd.var(1, unbiased=False, keepdim=True)
    expected = (xd - mean) / torch.sqrt(var + 1e-6) * ours.weight.double()[:, None, None] + ours.bias.double()[:, None, None]
    torch.testing.assert_close(ours(x).double(), expected, rtol=0, atol=2e-6)


def test_channel_norm_keeps_featups_keys_and_numbers():
    """FeatUp's ChannelNorm: keys norm.weight / norm.bias, eps 1e-5, = nn.LayerNorm on the
    channels-last view (bitwise)."""
    norm = ChannelNorm(8)
    assert sorted(norm.state_dict()) == ["norm.bias", "norm.weight"] and norm.norm.eps == 1e-5
    reference = nn.LayerNorm(8)
    nn.init.normal_(norm.norm.weight), nn.init.normal_(norm.norm.bias)
    reference.load_state_dict({k[len("norm."):]: v for k, v in norm.state_dict().items()})
    x = torch.randn(2, 8, 3, 4)
    assert torch.equal(norm(x), reference(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))


def test_layer_scale_is_timms():
    ours, theirs = LayerScale(6), timm.layers.LayerScale(6, init_values=1e-6)
    assert torch.equal(ours.gamma, theirs.gamma)
    nn.init.normal_(ours.gamma)
    theirs.load_state_dict(ours.state_dict())  # same key: gamma
    x = torch.randn(2, 3, 6)
    assert torch.equal(ours(x), theirs(x))


def test_torchvision_gaussian_blur_is_the_5_tap_sigma_1_blur():
    """``TF.gaussian_blur(x, [5, 5], [1, 1])`` = the separable kernel exp(-n^2/2)/sum, n = -2..2,
    with reflect borders (float64 formula; float32 input within 1e-6, measured 2.8e-7): the blur
    training/downsamplers.py writes by hand (which matches the same formula to 3.3e-7)."""
    x = torch.randn(2, 3, 9, 11, dtype=torch.float64)
    taps = torch.exp(-torch.arange(-2.0, 3.0, dtype=torch.float64).square() / 2)
    taps = taps / taps.sum()
    padded = nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    expected = sum(taps[i] * taps[j] * padded[..., i:i + 9, j:j + 11] for i in range(5) for j in range(5))
    torch.testing.assert_close(TF.gaussian_blur(x.float(), [5, 5], [1.0, 1.0]).double(), expected, rtol=0, atol=1e-6)


def test_layer_decay_rule_differs_from_timms():
    """Why lr_decay.py keeps its own rule: for a 2-block ViT, MAE's layer ids give embeddings d^3,
    block 0 d^2, block 1 d, final norm 1; timm's param_groups_layer_decay gives d^2, d, 1, 1."""
    from timm.optim import param_groups_layer_decay

    from anyup_dense.backbones import TimmViT
    from anyup_dense.integrations.detectron2.lr_decay import lr_multipliers

    d = 0.5
    vit = TimmViT("vit_small_patch14_reg4_dinov2", img_size=28, depth=2, embed_dim=16, num_heads=2, frozen=False)
    ours = {name: lr_multipliers(vit, d)[p] for name, p in vit.model.named_parameters()}
    names = {p: name for name, p in vit.model.named_parameters()}
    theirs = {names[p]: group["lr_scale"] for group in param_groups_layer_decay(vit.model, layer_decay=d)
              for p in group["params"]}
    picks = ("cls_token", "blocks.0.attn.qkv.weight", "blocks.1.mlp.fc2.bias", "norm.weight")
    assert [ours[k] for k in picks] == [d ** 3, d ** 2, d, 1.0]
    assert [theirs[k] for k in picks] == [d ** 2, d, 1.0, 1.0]
