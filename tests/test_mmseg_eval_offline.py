"""Build-time checks and offline evaluation of the mmseg integration.

* A head that does not take what the upsampler neck gives, or a crop / pad size that the
  backbone's patch does not divide, fails when the model is built, naming the key to set
  (not as a raw conv shape error at the first iteration, or in validation after training).
* ``tools/test.py`` builds the model without the ``pretrained=`` weights the checkpoint holds
  (no download: every download path raises here) and evaluates to the same metrics.
"""
import copy

import pytest
import timm.models._builder
import torch
from mmengine import Config
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

import anyup_dense.integrations.mmseg  # noqa: F401  (registers the modules)
import anyup_dense.checkpoints.loader as checkpoint_module
from anyup_dense.integrations.mmseg.cli import use_checkpoint_weights
from helpers import load_tool
from mmseg_helpers import CONFIGS, batch, tiny_config

TINY_VIT = dict(type="TimmViT", model_name="vit_small_patch14_dinov2", pretrained=None, img_size=56, depth=1,
                embed_dim=32, num_heads=2)
PREPROCESSOR = dict(type="SegDataPreProcessor", mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                    bgr_to_rgb=True, size_divisor=14, pad_val=0, seg_pad_val=255)
UPERNET = dict(
    type="GuidedEncoderDecoder", data_preprocessor=PREPROCESSOR, backbone=TINY_VIT,
    neck=dict(type="BilinearNeck", out_strides=(4, 8, 16, 32)),
    decode_head=dict(type="UPerHead", in_channels=[768] * 4, in_index=[0, 1, 2, 3], pool_scales=(1, 2), channels=8,
                     num_classes=4, norm_cfg=dict(type="BN"), align_corners=False),
    auxiliary_head=dict(type="FCNHead", in_channels=768, in_index=2, channels=8, num_convs=1, num_classes=4,
                        norm_cfg=dict(type="BN")),
    test_cfg=dict(mode="whole"))


def build(model: dict, **changes):
    """The segmentor ``model`` with ``changes`` merged into its top-level keys."""
    cfg = copy.deepcopy(model)
    for key, value in changes.items():
        cfg[key] = {**cfg[key], **value} if isinstance(value, dict) and isinstance(cfg.get(key), dict) else value
    init_default_scope("mmseg")
    return MODELS.build(cfg)


def test_head_channels_checked_at_build_and_the_named_fix_works():
    with pytest.raises(ValueError, match=r"model\.decode_head expects \[768, 768, 768, 768\] input channels, but the "
                                         r"upsampler neck gives 32 .*set model\.decode_head\.in_channels=\[32, 32, 32, 32\]"):
        build(UPERNET)
    with pytest.raises(ValueError, match=r"set model\.auxiliary_head\.in_channels=32$"):
        build(UPERNET, decode_head=dict(in_channels=[32] * 4))
    model = build(UPERNET, decode_head=dict(in_channels=[32] * 4), auxiliary_head=dict(in_channels=32))
    data = model.data_preprocessor(batch(2, 56, 56), training=True)
    losses = model.loss(data["inputs"], data["data_samples"])  # the fixed model trains
    assert torch.isfinite(losses["decode.loss_ce"]) and torch.isfinite(losses["aux.loss_ce"])


def test_head_reading_a_map_the_neck_does_not_give():
    with pytest.raises(ValueError, match=r"model\.auxiliary_head\.in_index=2 reads neck map\(s\) \[2\], but the neck "
                                         r"gives 1 map\(s\) \(model\.neck\.out_strides=\(1,\)\)"):
        build(dict(UPERNET, decode_head=dict(UPERNET["auxiliary_head"], in_channels=32, in_index=0)),
              neck=dict(out_strides=(1,)))


def test_concatenating_head_and_measured_backbone():
    """A ResNet backbone (channels measured by a dummy forward, which leaves batch norm
    statistics untouched) with DeepLabV3+, whose low-level input is neck map 0."""
    resnet = dict(type="ResNetV1c", depth=18, stem_channels=8, base_channels=8, norm_cfg=dict(type="BN"),
                  out_indices=(0, 1, 2, 3))  # channels 8, 16, 32, 64
    head = dict(type="DepthwiseSeparableASPPHead", in_channels=64, in_index=3, channels=8, c1_in_channels=8,
                c1_channels=4, dilations=(1, 2), num_classes=4, norm_cfg=dict(type="BN"))
    deeplab = dict(UPERNET, backbone=resnet, decode_head=head, auxiliary_head=None,
                   data_preprocessor=dict(PREPROCESSOR, size_divisor=32))
    with pytest.raises(ValueError, match=r"model\.decode_head expects 8 low-level channels, but the upsampler neck "
                                         r"gives 64: set model\.decode_head\.c1_in_channels=64"):
        build(deeplab)
    model = build(deeplab, decode_head=dict(c1_in_channels=64))
    assert model.backbone.training
    norms = [m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(int(m.num_batches_tracked) == 0 for m in norms)
    concat = dict(type="FCNHead", in_channels=[8, 8], in_index=[0, 1], input_transform="resize_concat",
                  channels=8, num_convs=1, num_classes=4, norm_cfg=dict(type="BN"))
    with pytest.raises(ValueError, match=r"expects 16 input channels.*set model\.decode_head\.in_channels=\[64, 64\]"):
        build(dict(deeplab, decode_head=concat))


@pytest.mark.parametrize("key, changes, fixed", [
    ("model.test_cfg.crop_size=(50, 50)", dict(test_cfg=dict(mode="slide", crop_size=(50, 50), stride=(28, 28))),
     "(56, 56)"),
    ("model.data_preprocessor.size=(500, 500)", dict(data_preprocessor=dict(size=(500, 500))), "(504, 504)"),
])
def test_sizes_the_patch_does_not_divide_are_refused(key, changes, fixed):
    model = dict(UPERNET, decode_head=dict(UPERNET["decode_head"], in_channels=[32] * 4), auxiliary_head=None)
    with pytest.raises(ValueError) as info:
        build(model, **changes)
    message = str(info.value)
    assert key in message and "multiple of the backbone patch size 14" in message and message.endswith(fixed)


# ---- tools/test.py loads every weight the checkpoint holds from it, downloading nothing ----

PROBE = CONFIGS / "linear_probe" / "anyup_vit-s14-dinov2_linear-probe_ade20k-151_448x448.py"


@pytest.fixture
def no_downloads(monkeypatch, tmp_path):
    """Any weight download (timm's pretrained weights, an upsampler release) raises."""
    def refuse(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(timm.models._builder, "load_pretrained", refuse)
    monkeypatch.setattr(checkpoint_module, "download", refuse)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))


def write_checkpoint(model: torch.nn.Module, path, drop: str = "") -> str:
    """An mmengine-format checkpoint of ``model`` (without the keys starting with ``drop``)."""
    state = {k: v for k, v in model.state_dict().items() if not (drop and k.startswith(drop))}
    torch.save({"meta": {"epoch": 1}, "state_dict": state}, path)
    return str(path)


@pytest.mark.slow
def test_test_tool_evaluates_offline_from_the_checkpoint(synthetic_root, tmp_path, no_downloads):
    """The config asks for timm's backbone weights and the AnyUp release; with a checkpoint
    that holds both, tools/test.py builds without them and gives the metrics of the same
    checkpoint under a config that asks for no weights."""
    local = tiny_config(PROBE, synthetic_root, tmp_path / "work", "anyup", epochs=1)
    local.dump(str(tmp_path / "local.py"))
    online = copy.deepcopy(local)
    online.merge_from_dict({"model.backbone.pretrained": True, "model.neck.pretrained": "anyup_paper"})
    online.dump(str(tmp_path / "online.py"))
    init_default_scope("mmseg")
    with pytest.raises(AssertionError, match="a download was attempted"):  # the guard works
        MODELS.build(online.model)
    model = MODELS.build(local.model)
    torch.nn.init.normal_(model.decode_head.conv_seg.weight)  # not the init the tool's model gets
    checkpoint = write_checkpoint(model, tmp_path / "full.pth")
    test_tool = load_tool("test")
    reference = test_tool.main([str(tmp_path / "local.py"), checkpoint, "--work-dir", str(tmp_path / "a")])
    offline = test_tool.main([str(tmp_path / "online.py"), checkpoint, "--work-dir", str(tmp_path / "b")])
    assert reference == offline and set(reference) >= {"aAcc", "mIoU"}


def test_only_parts_the_checkpoint_holds_lose_their_pretrained(tmp_path):
    cfg = Config(dict(model=dict(backbone=dict(type="TimmViT", pretrained=True),
                                 neck=dict(type="UpsamplerNeck", upsampler=dict(type="anyup", pretrained="anyup_paper")))))
    path = tmp_path / "no_backbone.pth"
    torch.save({"state_dict": {"neck.upsampler.w": torch.zeros(1), "decode_head.w": torch.zeros(1)}}, path)
    changes = use_checkpoint_weights(cfg, str(path))
    assert changes == [f"model.neck.upsampler.pretrained='anyup_paper' -> None: the neck.upsampler.* weights are loaded from {path}"]
    assert cfg.model.backbone.pretrained is True and cfg.model.neck.upsampler.pretrained is None
