"""Every config under configs/detectron2/ loads, builds its model with a tiny ViT swapped in,
and runs one inference pass. Variants whose upsampler is not registered yet must fail with
the registry's error naming it."""
import pytest
import torch

from detectron2_helpers import CONFIG_DIR, TINY_UPSAMPLER, TINY_VIT, d2, tiny_yacs_cfg

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
