"""Every shipped mmseg config builds (tiny backbone swapped in) and runs a forward pass, and
a stock mmseg model config converts to an upsampled-feature model by the two-key change."""
import pathlib

import pytest

import anyup_dense.integrations.mmseg  # noqa: E402,F401
import torch  # noqa: E402
from mmengine import Config  # noqa: E402
from mmengine.model import revert_sync_batchnorm  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmseg.registry import MODELS  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs" / "mmseg"
LEAVES = sorted(p for p in CONFIGS.rglob("*.py") if "_base_" not in p.parts)
SIZE = 56
TINY_BACKBONE = dict(model_name="vit_small_patch14_dinov2", pretrained=None, img_size=SIZE, depth=2, embed_dim=32,
                     num_heads=2)
TINY_NECK = {  # neck type -> overrides making it tiny and weight-free
    "BilinearNeck": {}, "AnyUpNeck": dict(pretrained=None, qk_dim=16),
    "FeatUpNeck": dict(backbone=None, dim=32, pretrained=None),
    "FeatSharpNeck": dict(dim=32, model_resolution=SIZE, num_heads=2),
    "UpsamplerNeck": {},  # the compare/ configs: bilinear until tools/compare.py sets the upsampler
}


def tiny_model_cfg(cfg: Config) -> dict:
    """cfg-options-style overrides: tiny ViT, tiny neck, heads sized for 32 channels."""
    neck_type = cfg.model.neck.type
    overrides = {"model.backbone": TINY_BACKBONE, **{f"model.neck.{k}": v for k, v in TINY_NECK[neck_type].items()}}
    head = cfg.model.decode_head
    if isinstance(head.in_channels, (list, tuple)):  # multi-stride neck + UPerHead
        overrides.update({"model.decode_head.in_channels": [32] * len(head.in_channels),
                          "model.decode_head.channels": 16, "model.auxiliary_head.in_channels": 32,
                          "model.auxiliary_head.channels": 16, "model.data_preprocessor.size": (SIZE, SIZE),
                          "model.test_cfg": dict(mode="whole")})
    else:
        overrides["model.decode_head.in_channels"] = 32
    cfg.merge_from_dict(overrides)
    return cfg.model


def build(model_cfg) -> torch.nn.Module:
    init_default_scope("mmseg")
    return revert_sync_batchnorm(MODELS.build(model_cfg))


def leaf_params():
    params = []
    for path in LEAVES:
        params.append(pytest.param(path, id=str(path.relative_to(CONFIGS))))
    return params


def test_every_published_row_has_a_config():
    names = {p.name for p in LEAVES}
    for neck in ("bilinear", "featup", "anyup", "featsharp"):
        for ds in ("ade20k-151", "coco-stuff-27", "voc-21", "cityscapes-19"):
            assert f"{neck}_vit-s14-dinov2_linear-probe_{ds}_448x448.py" in names
    for neck in ("bilinear", "featup", "anyup"):
        for task in ("depth", "normal"):
            assert f"{neck}_vit-s14-dinov2_{task}-probe_nyu_224x224.py" in names
    for path in LEAVES:  # each published row's header names its target; each compare config its protocol
        expected = "# Protocol " if path.parent.name == "compare" else "# Target:"
        assert expected in path.read_text(), path


@pytest.mark.slow
@pytest.mark.parametrize("path", leaf_params())
def test_config_builds_and_runs_forward(path):
    cfg = Config.fromfile(str(path))
    assert cfg.custom_imports.imports == ["anyup_dense.integrations.mmseg"]
    model = build(tiny_model_cfg(cfg)).eval()
    image = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        out = model(image, mode="tensor")
    expected = {"GuidedEncoderDecoder": cfg.model.decode_head.get("num_classes"), "GuidedDepthEstimator": 1,
                "GuidedNormalEstimator": 4}[cfg.model.type]
    assert out.shape[:2] == (1, expected) and torch.isfinite(out).all()
    stride = 4 if isinstance(cfg.model.decode_head.in_channels, list) else min(cfg.model.neck.get("out_strides", (1, )))
    assert out.shape[-1] == SIZE // stride


def test_two_key_change_converts_a_stock_mmseg_config():
    import mmseg

    stock = pathlib.Path(mmseg.__file__).parent / ".mim" / "configs" / "_base_" / "models" / "upernet_vit-b16_ln_mln.py"
    cfg = Config.fromfile(str(stock))
    # the two-key change:
    cfg.merge_from_dict({"model.type": "GuidedEncoderDecoder",
                         "model.neck": dict(_delete_=True, type="AnyUpNeck", out_strides=(4, 8, 16, 32))})
    # shrink the stock ViT-B for a CPU test (not part of the conversion)
    cfg.merge_from_dict({"model.pretrained": None, "model.neck.qk_dim": 16,
                         "model.backbone.img_size": (64, 64), "model.backbone.embed_dims": 32,
                         "model.backbone.num_layers": 2, "model.backbone.num_heads": 2,
                         "model.backbone.out_indices": (0, 1), "model.decode_head.in_channels": [32] * 4,
                         "model.decode_head.channels": 16, "model.auxiliary_head.in_channels": 32,
                         "model.auxiliary_head.channels": 16})
    model = build(cfg.model).eval()
    assert type(model.neck).__name__ == "AnyUpNeck"
    with torch.no_grad():
        maps = model.extract_feat(torch.randn(1, 3, 64, 64))
    assert [tuple(m.shape) for m in maps] == [(1, 32, 16, 16), (1, 32, 8, 8), (1, 32, 4, 4), (1, 32, 2, 2)]
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64), mode="tensor").shape == (1, 19, 16, 16)


def test_stock_segmentor_with_guided_neck_names_the_type_to_use():
    cfg = Config.fromfile(str(CONFIGS / "linear_probe" / "anyup_vit-s14-dinov2_linear-probe_ade20k-151_448x448.py"))
    model_cfg = tiny_model_cfg(cfg)
    model_cfg.type = "EncoderDecoder"
    model = build(model_cfg).eval()
    with pytest.raises(RuntimeError, match="GuidedEncoderDecoder"):
        model(torch.randn(1, 3, SIZE, SIZE), mode="tensor")
