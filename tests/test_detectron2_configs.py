"""Every config under configs/detectron2/ loads, builds its model with a tiny ViT swapped in,
and runs one inference pass. Variants whose upsampler is not registered yet must fail with
the registry's error naming it. The LazyConfig docstring's overrides work as written; the
yacs upsampler arguments that follow from the ViT are derived or checked at build time."""
import ast
import re

import pytest
import torch

from detectron2_helpers import (  # noqa: F401
    CONFIG_DIR, MASK_RCNN, TINY_UPSAMPLER, TINY_VIT, d2, no_network, tiny_yacs_cfg)

import anyup_dense

YAML_VARIANTS = sorted(p for p in CONFIG_DIR.glob("COCO-*/*.yaml"))
LAZY_CONFIGS = sorted(CONFIG_DIR.glob("lazy/*.py"))


def _inputs():
    image = torch.randint(0, 256, (3, 64, 80), dtype=torch.uint8)
    return [{"image": image, "height": 64, "width": 80}]


def _check_inference(model, has_masks):
    model.eval()
    with torch.no_grad():
        (output,) = model(_inputs())
    instances = output["instances"]
    assert len(instances) > 0
    assert instances.image_size == (64, 80)
    assert instances.has("pred_masks") == has_masks


def test_every_published_variant_has_a_config():
    names = {p.stem for p in YAML_VARIANTS}
    for arch in ("mask_rcnn", "retinanet"):
        for variant in ("baseline_1x", "bilinear_2x", "featup_2x", "featsharp_2x", "anyup_2x"):
            assert f"{arch}_vit_s14_{variant}" in names


@pytest.mark.slow
@pytest.mark.parametrize("path", YAML_VARIANTS, ids=lambda p: p.stem)
def test_yacs_config_builds_and_infers(path):
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    raw = d2.add_anyup_config(get_cfg())
    raw.merge_from_file(str(path))
    assert raw.MODEL.BACKBONE.NAME == "build_upsampled_vit_backbone"
    assert raw.MODEL.UPSAMPLER.FACTOR == (1 if "baseline" in path.stem else 2)
    header = path.read_text().splitlines()[:4]
    assert any("FeatSharp Tab. 1" in line for line in header), "header must name the published row"
    name = raw.MODEL.UPSAMPLER.NAME
    cfg = tiny_yacs_cfg(path, name)
    if name and name not in anyup_dense.list_upsamplers():
        with pytest.raises(KeyError, match=f"unknown upsampler '{name}'"):
            build_model(cfg)
        return
    model = build_model(cfg)
    assert model.backbone.factor == raw.MODEL.UPSAMPLER.FACTOR
    _check_inference(model, has_masks=cfg.MODEL.MASK_ON)


@pytest.mark.slow
@pytest.mark.parametrize("path", LAZY_CONFIGS, ids=lambda p: p.stem)
def test_lazy_config_builds_and_infers(path):
    from detectron2.config import LazyConfig, instantiate

    cfg = LazyConfig.load(str(path))
    assert {"model", "dataloader", "optimizer", "lr_multiplier", "train"} <= set(cfg.keys())
    assert cfg.dataloader.evaluator.use_fast_impl is False
    cfg.model.backbone.vit.update(pretrained=None, **TINY_VIT)
    upsampler = cfg.model.backbone.upsampler
    upsampler.update(pretrained=None, **TINY_UPSAMPLER.get(upsampler.name, {}))
    cfg.model.roi_heads.box_predictor.test_score_thresh = 0.0  # an untrained model scores low
    model = instantiate(cfg.model)
    assert isinstance(model.backbone, d2.UpsampledViTBackbone)
    _check_inference(model, has_masks=hasattr(model, "roi_heads") and model.roi_heads.mask_on)


LAZY_ANYUP = CONFIG_DIR / "lazy" / "mask_rcnn_vit_s14_anyup_2x.py"
# Each override example of LAZY_ANYUP's docstring -> what the built backbone must show.
LAZY_DOC_EXAMPLES = {
    "model.backbone.upsampler.name=bilinear model.backbone.upsampler.pretrained=null":
        lambda b: type(b.upsampler).__name__ == "InterpolationUpsampler" and b.factor == 2,
    "model.backbone.upsampler=null model.backbone.factor=1":
        lambda b: b.upsampler is None and b.factor == 1,
    "model.backbone.vit.pretrained=null model.backbone.upsampler.pretrained=null":
        lambda b: b.vit.weights == "random" and type(b.upsampler).__name__ == "AnyUp",
}


def _docstring_overrides(path):
    """The ``...`` spans of a module docstring that start with ``model.``, whitespace-normalised."""
    doc = ast.get_docstring(ast.parse(path.read_text()))
    return [" ".join(span.split()) for span in re.findall(r"``(model\..*?)``", doc, flags=re.S)]


def test_lazy_docstring_examples_are_the_tested_ones():
    assert _docstring_overrides(LAZY_ANYUP) == list(LAZY_DOC_EXAMPLES)


@pytest.mark.slow
@pytest.mark.parametrize("spelling", ["null", "None"])
@pytest.mark.parametrize("example", list(LAZY_DOC_EXAMPLES))
def test_lazy_docstring_overrides_work_as_written(example, spelling, no_network):
    """Applied as tools/train_net.py applies them (``LazyConfig.apply_overrides``), offline;
    Hydra reads ``None`` as a string, which must mean None too."""
    from detectron2.config import LazyConfig, instantiate

    cfg = LazyConfig.load(str(LAZY_ANYUP))
    cfg.model.backbone.vit.update(**TINY_VIT)
    if "vit.pretrained" not in example:  # the example leaves the ViT alone: no download for it here
        cfg.model.backbone.vit.pretrained = None
    overrides = example.replace("=null", f"={spelling}").split()
    backbone = instantiate(LazyConfig.apply_overrides(cfg, overrides).model.backbone)
    assert LAZY_DOC_EXAMPLES[example](backbone)
    outputs = backbone(torch.randn(1, 3, 64, 64))
    assert outputs["p2"].shape == (1, 256, 16, 16)


def _featsharp_cfg(**kwargs):
    from detectron2.config import CfgNode

    cfg = tiny_yacs_cfg(MASK_RCNN / "mask_rcnn_vit_s14_bilinear_2x.yaml", "bilinear")
    cfg.defrost()
    cfg.MODEL.UPSAMPLER.NAME = "featsharp"
    cfg.MODEL.UPSAMPLER.KWARGS = CfgNode(kwargs, new_allowed=True)
    cfg.freeze()
    return cfg


def test_featsharp_from_yacs_takes_dim_patch_and_resolution_from_the_vit():
    backbone = d2.build_upsampled_vit_backbone(_featsharp_cfg())
    featsharp = backbone.upsampler
    # TINY_VIT: embed_dim 32, patch 14, img_size 56 -> a 4 x 4 grid at 56 px
    assert (featsharp.expected_channels, featsharp.model_resolution, featsharp.lr_size) == (32, 56, 4)
    assert backbone(torch.randn(1, 3, 64, 96))["p3"].shape == (1, 32, 8, 12)
    assert d2.build_upsampled_vit_backbone(_featsharp_cfg(model_resolution=28)).upsampler.lr_size == 2


@pytest.mark.parametrize("kwargs,message", [
    ({"dim": 48}, r"FeatSharp takes 48-channel features \(its dim\) but the ViT vit_small_patch14_dinov2.lvd142m "
                  r"gives 32; set the upsampler's dim to 32"),
    ({"patch_size": 8}, r"FeatSharp takes a 7x7 feature grid at model_resolution=56 \(patch_size 8\), but the ViT "
                        r"vit_small_patch14_dinov2.lvd142m has patch size 14; set the upsampler's patch_size to 14"),
])
def test_featsharp_that_does_not_fit_the_vit_fails_when_the_model_is_built(kwargs, message):
    from detectron2.modeling import build_model

    with pytest.raises(ValueError, match=message):
        build_model(_featsharp_cfg(**kwargs))


def test_featsharp_resolution_of_a_non_square_vit_must_be_given():
    cfg = _featsharp_cfg()
    cfg.defrost()
    cfg.MODEL.VIT.KWARGS.img_size = [56, 84]
    with pytest.raises(ValueError, match=r"the ViT vit_small_patch14_dinov2.lvd142m was built for 56x84 inputs; an "
                                         r"upsampler that needs a square model_resolution must get it in "
                                         r"MODEL.UPSAMPLER.KWARGS"):
        d2.build_upsampled_vit_backbone(cfg)
    cfg.MODEL.UPSAMPLER.KWARGS.model_resolution = 56
    assert d2.build_upsampled_vit_backbone(cfg).upsampler.lr_size == 4


@pytest.mark.parametrize("vit,upsampler,key", [
    ("default", "", "MODEL.VIT.PRETRAINED 'default'"),
    ("", "anyup_multi_backbone", "MODEL.UPSAMPLER.PRETRAINED 'anyup_multi_backbone'"),
])
def test_offline_weights_failure_names_the_key_to_set(vit, upsampler, key, no_network):
    cfg = tiny_yacs_cfg(MASK_RCNN / "mask_rcnn_vit_s14_anyup_2x.yaml", "anyup")
    cfg.defrost()
    cfg.MODEL.VIT.PRETRAINED, cfg.MODEL.UPSAMPLER.PRETRAINED = vit, upsampler
    with pytest.raises(OSError, match=f"{key}: the weights could not be loaded .*Without network, set "
                                      f"{key.split()[0]} to a local file"):
        d2.build_upsampled_vit_backbone(cfg)
