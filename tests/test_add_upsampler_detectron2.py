"""A new upsampler class through the Detectron2 backbone. tools/add_upsampler.py on Detectron2's
stock yacs configs (Faster R-CNN, RetinaNet, Mask R-CNN) and LazyConfigs (Mask R-CNN, RetinaNet,
new_baselines, a local file): the converted config inherits the stock one, sets the pyramid levels
the heads read, and the model builds and runs a forward pass; a head reading a level the pyramid
lacks (RetinaNet's p7 with the default p2-p6 pyramid) is refused at build time naming the keys."""
import pytest
import torch

import anyup_dense.integrations.detectron2 as d2
from anyup_dense.integrations.detectron2.config import pyramid_for
from anyup_dense import UPSAMPLERS
from helpers import load_tool
from parity_adapters import build_gated_bilinear, check_parity, gated_bilinear_fixture
from detectron2.config import LazyConfig, get_cfg, instantiate
from detectron2.modeling import build_model

STOCK = {"COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml": ([2, 3, 4, 5], "maxpool"),
         "COCO-Detection/retinanet_R_50_FPN_1x.yaml": ([3, 4, 5], "p6p7"),
         "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml": ([2, 3, 4, 5], "maxpool")}
TINY_VIT = {"img_size": 56, "depth": 1, "embed_dim": 32, "num_heads": 2}


def load(path):
    """The converted yaml with a tiny random ViT (test only)."""
    cfg = d2.add_anyup_config(get_cfg())
    cfg.merge_from_file(str(path))
    cfg.MODEL.VIT.NAME, cfg.MODEL.VIT.PRETRAINED = "vit_small_patch14_dinov2", ""  # tiny, random (test only)
    cfg.MODEL.VIT.KWARGS.update(TINY_VIT)
    cfg.MODEL.UPSAMPLER.KWARGS.update({"qk_dim": 8})
    cfg.MODEL.DEVICE = "cpu"
    return cfg


@pytest.mark.slow
@pytest.mark.parametrize("stock", list(STOCK))
def test_converted_yacs_config_builds_and_runs(stock, tmp_path, capsys):
    out = tmp_path / "converted.yaml"
    load_tool("add_upsampler").main([stock, "--upsampler", "anyup", "--pretrained", "none", "-o", str(out)])
    assert "MODEL.SFP: LEVELS" in capsys.readouterr().out
    cfg = load(out)
    levels, top = STOCK[stock]
    assert (list(cfg.MODEL.SFP.LEVELS), cfg.MODEL.SFP.TOP_BLOCK, cfg.MODEL.WEIGHTS) == (levels, top, "")
    assert cfg.MODEL.BACKBONE.NAME == "build_upsampled_vit_backbone" and cfg.MODEL.UPSAMPLER.FACTOR == 2
    model = build_model(cfg).eval()
    with torch.no_grad():
        result = model([{"image": torch.randint(0, 255, (3, 64, 96), dtype=torch.uint8), "height": 64,
                         "width": 96}])
    assert "instances" in result[0] and result[0]["instances"].image_size == (64, 96)


def test_pyramid_head_mismatch_names_the_keys(tmp_path):
    out = tmp_path / "retinanet.yaml"
    load_tool("add_upsampler").main(["COCO-Detection/retinanet_R_50_FPN_1x.yaml", "--upsampler", "anyup",
                                     "--pretrained", "none", "-o", str(out)])
    cfg = load(out)
    cfg.MODEL.SFP.LEVELS, cfg.MODEL.SFP.TOP_BLOCK = [2, 3, 4, 5], "maxpool"  # the defaults: p2..p6
    with pytest.raises(ValueError, match=r"MODEL.RETINANET.IN_FEATURES reads \['p7'\].*set MODEL.SFP.LEVELS "
                                         r"\[3, 4, 5\] and MODEL.SFP.TOP_BLOCK 'p6p7'"):
        build_model(cfg)


@pytest.mark.parametrize("features, expected", [(["p3", "p4", "p5", "p6", "p7"], ([3, 4, 5], "p6p7")),
                                                (["p2", "p3", "p4", "p5", "p6"], ([2, 3, 4, 5], "maxpool")),
                                                (["p3", "p4", "p5"], ([3, 4, 5], ""))])
def test_pyramid_for(features, expected):
    assert pyramid_for(features) == expected


LAZY_STOCK = {"COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.py": ([2, 3, 4, 5], "maxpool"),
              "COCO-Detection/retinanet_R_50_FPN_1x.py": ([3, 4, 5], "p6p7")}


def convert_lazy_tool(stock, out, *extra):
    load_tool("add_upsampler").main([stock, "--upsampler", "anyup", "--pretrained", "none", "-o", str(out), *extra])
    return LazyConfig.load(str(out))


@pytest.mark.slow
@pytest.mark.parametrize("stock", list(LAZY_STOCK))
def test_converted_lazy_config_builds_and_runs(stock, tmp_path, capsys):
    cfg = convert_lazy_tool(stock, tmp_path / "converted.py")
    assert "model.backbone pyramid: levels" in capsys.readouterr().out
    backbone = cfg.model.backbone
    assert (backbone.levels, backbone.top_block, backbone.factor, cfg.train.init_checkpoint) == (
        *LAZY_STOCK[stock], 2, "")
    assert backbone.upsampler.name == "anyup" and "pretrained" not in backbone.upsampler
    backbone.vit.update(model_name="vit_small_patch14_dinov2", pretrained=None, **TINY_VIT)  # tiny, random (test only)
    backbone.upsampler.qk_dim = 8
    model = instantiate(cfg.model).eval()
    levels, top = LAZY_STOCK[stock]
    tops = {"maxpool": ["p6"], "p6p7": ["p6", "p7"]}
    assert list(model.backbone.output_shape()) == [f"p{n}" for n in levels] + tops[top]
    with torch.no_grad():
        result = model([{"image": torch.randint(0, 255, (3, 64, 96), dtype=torch.uint8), "height": 64,
                         "width": 96}])
    assert "instances" in result[0] and result[0]["instances"].image_size == (64, 96)


def test_lazy_conversion_of_new_baselines_and_local_file(tmp_path):
    """new_baselines (LSJ, SyncBN heads) by model-zoo name; a local LazyConfig by path; an mmseg
    config is not taken for a LazyConfig."""
    cfg = convert_lazy_tool("new_baselines/mask_rcnn_R_50_FPN_100ep_LSJ.py", tmp_path / "lsj.py")
    assert (cfg.model.backbone.levels, cfg.model.backbone.top_block, cfg.train.init_checkpoint) == (
        [2, 3, 4, 5], "maxpool", "")
    assert cfg.train.amp.enabled is True  # the rest of the stock config is kept
    local = tmp_path / "local.py"
    local.write_text("from detectron2 import model_zoo\n"
                     "model = model_zoo.get_config('common/models/retinanet.py').model\n"
                     "model.head_in_features = ['p3', 'p4', 'p5']\n")
    cfg = convert_lazy_tool(str(local), tmp_path / "local_anyup.py")
    assert (cfg.model.backbone.levels, cfg.model.backbone.top_block) == ([3, 4, 5], None)
    tool = load_tool("add_upsampler")
    assert tool.converter("mmseg::segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py") is tool.convert_mmseg
    assert tool.converter(str(local)) is tool.convert_detectron2_lazy


@pytest.mark.slow
def test_new_upsampler_runs_through_the_detectron2_backbone(monkeypatch, tmp_path, capsys):
    """A new upsampler with only a model class, its registration and a fixture: the parity harness
    passes it, and the converted stock config builds a RetinaNet whose backbone runs it."""
    monkeypatch.setattr(UPSAMPLERS, "_builders", UPSAMPLERS.builders())  # restored after the test
    UPSAMPLERS.register("gated_bilinear")(build_gated_bilinear)
    assert check_parity(gated_bilinear_fixture(seed=1))["output"] <= 1e-9
    out = tmp_path / "retinanet_gated.yaml"
    load_tool("add_upsampler").main(["COCO-Detection/retinanet_R_50_FPN_1x.yaml", "--upsampler", "gated_bilinear",
                                     "--pretrained", "none", "-o", str(out)])
    cfg = load(out)
    cfg.MODEL.UPSAMPLER.KWARGS.pop("qk_dim")  # load() sets it for AnyUp
    model = build_model(cfg).eval()
    assert type(model.backbone.upsampler).__name__ == "GatedBilinear"
    with torch.no_grad():
        result = model([{"image": torch.randint(0, 255, (3, 64, 96), dtype=torch.uint8), "height": 64,
                         "width": 96}])
    assert result[0]["instances"].image_size == (64, 96)
