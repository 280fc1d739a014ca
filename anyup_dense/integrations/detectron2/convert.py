"""Convert a stock Detectron2 yacs config into one with the upsampled-ViT backbone
(``tools/add_upsampler.py CONFIG.yaml``).

The written yaml inherits the stock one (``_BASE_``) and sets only: ``MODEL.BACKBONE.NAME``
(:func:`build_upsampled_vit_backbone`), ``MODEL.WEIGHTS ""`` (the stock value is an ImageNet
ResNet), the ViT and upsampler keys, and the pyramid levels the heads read
(``MODEL.SFP.LEVELS`` / ``TOP_BLOCK`` from their ``IN_FEATURES``, e.g. RetinaNet's p3-p7)
with the stock FPN's channel count. The guidance normalisation needs no key: the backbone
reads ``MODEL.PIXEL_MEAN/STD`` and ``INPUT.FORMAT``. Load it with ``add_anyup_config``.
"""
import pathlib
from typing import List, Tuple

import yaml

from anyup_dense.integrations.detectron2.config import add_anyup_config, head_features, pyramid_for  # shim first
from detectron2.config import get_cfg  # noqa: E402

TRAINING_FREE = ("bilinear", "bicubic")


def resolve_yaml(source: str) -> pathlib.Path:
    """A yaml path, or a path relative to Detectron2's model zoo (``COCO-Detection/...yaml``)."""
    path = pathlib.Path(source)
    if not path.is_file():
        from detectron2 import model_zoo

        path = pathlib.Path(model_zoo.get_config_file(source))
    return path.resolve()


def convert_yaml(source: str, upsampler: str, factor: int = 2, pretrained: str = "default",
                 vit: str = "vit_small_patch14_dinov2.lvd142m", vit_pretrained: str = "default") -> Tuple[dict, List[str]]:
    """The converted yaml as a dict (``_BASE_`` first) and a summary line per change."""
    path = resolve_yaml(source)
    cfg = add_anyup_config(get_cfg())
    cfg.merge_from_file(str(path))
    features = sorted({name for names in head_features(cfg).values() for name in names}, key=lambda n: int(n[1:]))
    if not features:
        raise ValueError(f"MODEL.META_ARCHITECTURE {cfg.MODEL.META_ARCHITECTURE!r} is not supported (the converter "
                         f"knows RetinaNet, GeneralizedRCNN and ProposalNetwork)")
    levels, top = pyramid_for(features)
    channels = cfg.MODEL.FPN.OUT_CHANNELS
    pretrained = "" if upsampler in TRAINING_FREE and pretrained == "default" else pretrained
    model = {"BACKBONE": {"NAME": "build_upsampled_vit_backbone"}, "WEIGHTS": "",
             "VIT": {"NAME": vit, "PRETRAINED": vit_pretrained},
             "UPSAMPLER": {"NAME": upsampler, "FACTOR": factor, "PRETRAINED": pretrained},
             "SFP": {"LEVELS": levels, "TOP_BLOCK": top, "OUT_CHANNELS": channels}}
    summary = [f"MODEL.BACKBONE.NAME: {cfg.MODEL.BACKBONE.NAME} -> build_upsampled_vit_backbone",
               f"MODEL.WEIGHTS: {cfg.MODEL.WEIGHTS!r} -> '' (the ViT and upsampler bring their own)",
               f"MODEL.VIT: {vit} (PRETRAINED {vit_pretrained!r}); MODEL.UPSAMPLER: {upsampler} x{factor} "
               f"(PRETRAINED {pretrained!r})",
               f"MODEL.SFP: LEVELS {levels}, TOP_BLOCK {top!r}, OUT_CHANNELS {channels}: gives {features}, which "
               + ", ".join(head_features(cfg)) + " read",
               f"guidance normalisation: from MODEL.PIXEL_MEAN {list(cfg.MODEL.PIXEL_MEAN)}, PIXEL_STD "
               f"{list(cfg.MODEL.PIXEL_STD)}, INPUT.FORMAT {cfg.INPUT.FORMAT}"]
    return {"_BASE_": str(path), "MODEL": model}, summary


def yaml_text(keys: dict, header: List[str]) -> str:
    return "".join(f"# {line}\n" for line in header) + yaml.safe_dump(keys, sort_keys=False)
