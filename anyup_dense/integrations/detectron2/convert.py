"""Convert a stock Detectron2 config (yacs ``.yaml`` or LazyConfig ``.py``) into one with the
upsampled-ViT backbone (``tools/add_upsampler.py CONFIG``).

The written yaml inherits the stock one (``_BASE_``) and sets only: ``MODEL.BACKBONE.NAME``
(:func:`build_upsampled_vit_backbone`), ``MODEL.WEIGHTS ""`` (the stock value is an ImageNet
ResNet), the ViT and upsampler keys, and the pyramid levels the heads read
(``MODEL.SFP.LEVELS`` / ``TOP_BLOCK`` from their ``IN_FEATURES``, e.g. RetinaNet's p3-p7)
with the stock FPN's channel count. The guidance normalisation needs no key: the backbone
reads ``MODEL.PIXEL_MEAN/STD`` and ``INPUT.FORMAT``. Load it with ``add_anyup_config``.

A LazyConfig (:func:`convert_lazy`) becomes a ``.py`` that loads the stock one, sets
``model.backbone`` to ``UpsampledViTBackbone`` with the levels every ``*in_features`` of the
heads reads and ``train.init_checkpoint = ""``.
"""
import pathlib
import re
from typing import Dict, List, Tuple

import yaml
from omegaconf import ListConfig

from anyup_dense.integrations.detectron2.config import (add_anyup_config, head_features,  # shim first
                                                        parse_pretrained, pyramid_for)
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


# LazyConfig side ------------------------------------------------------------------------------

def lazy_head_features(model, prefix: str = "model") -> Dict[str, List[str]]:
    """``{dotted key: levels}`` for every ``*in_features`` list of p-levels in ``model`` outside
    its backbone (``roi_heads.box_in_features``, ``proposal_generator.in_features``,
    RetinaNet's/FCOS's ``head_in_features``, ...)."""
    found = {}
    for key, value in model.items():
        dotted = f"{prefix}.{key}"
        if key == "backbone" and prefix == "model":
            continue
        if hasattr(value, "items"):
            found.update(lazy_head_features(value, dotted))
        elif (str(key).endswith("in_features") and isinstance(value, (list, tuple, ListConfig)) and value
              and all(isinstance(v, str) and re.fullmatch(r"p\d", v) for v in value)):
            found[dotted] = list(value)
    return found


def convert_lazy(source: str, upsampler: str, factor: int = 2, pretrained: str = "default",
                 vit: str = "vit_small_patch14_dinov2.lvd142m",
                 vit_pretrained: str = "default") -> Tuple[str, List[str]]:
    """The converted LazyConfig's text (without header) and a summary line per change.

    The written file loads the stock config (``model_zoo.get_config`` for a model-zoo name,
    ``LazyConfig.load`` for a path), re-exports its top-level nodes, and sets
    ``model.backbone`` to :class:`UpsampledViTBackbone` (pyramid levels the heads read, the
    stock FPN's ``out_channels``, the model's ``pixel_mean/std`` and ``input_format`` by
    interpolation) and ``train.init_checkpoint = ""``."""
    from detectron2.config import LazyConfig

    in_zoo = not pathlib.Path(source).is_file()
    if in_zoo:
        from detectron2 import model_zoo

        stock = model_zoo.get_config(source)
        load, loader = f"model_zoo.get_config({source!r})", "from detectron2 import model_zoo\n"
    else:
        source = str(pathlib.Path(source).resolve())
        stock = LazyConfig.load(source)
        load, loader = f"LazyConfig.load({source!r})", "from detectron2.config import LazyConfig\n"
    if "model" not in stock or "backbone" not in stock.model:
        raise ValueError(f"config {source!r}: expected a LazyConfig with model.backbone, got top-level keys "
                         f"{sorted(stock)}")
    heads = lazy_head_features(stock.model)
    if not heads:
        raise ValueError(f"config {source!r}: no head of model reads p-levels (*in_features = ['p2', ...]); the "
                         f"converter supports FPN-based models (Mask/Faster R-CNN, RetinaNet, FCOS, ...)")
    features = sorted({name for names in heads.values() for name in names}, key=lambda n: int(n[1:]))
    levels, top = pyramid_for(features)
    channels = stock.model.backbone.get("out_channels", 256)
    vit_weights = parse_pretrained(vit_pretrained)
    up_weights = None if upsampler in TRAINING_FREE and pretrained == "default" else parse_pretrained(pretrained)
    up_args = f"name={upsampler!r}" + ("" if up_weights is None else f", pretrained={up_weights!r}")
    norm_args = "".join(f"    {key}=\"${{..{key}}}\",\n" for key in ("pixel_mean", "pixel_std", "input_format")
                        if key in stock.model)
    names = sorted(key for key in stock if not key.startswith("_"))
    old_backbone = stock.model.backbone.get("_target_", "?")
    old_backbone = getattr(old_backbone, "__name__", old_backbone)
    text = ("import anyup_dense.integrations.detectron2  # noqa: F401  (first: the detectron2 compat shim)\n"
            f"{loader}from detectron2.config import LazyCall as L\n\n"
            "from anyup_dense.integrations.detectron2 import UpsampledViTBackbone\n"
            "from anyup_dense.integrations.detectron2.lazy import lazy_upsampler, lazy_vit\n\n"
            f"_stock = {load}\n"
            f"{', '.join(names)} = {', '.join(f'_stock.{n}' for n in names)}\n\n"
            "model.backbone = L(UpsampledViTBackbone)(\n"
            f"    vit=L(lazy_vit)(model_name={vit!r}, pretrained={vit_weights!r}, frozen=True),\n"
            f"    upsampler=L(lazy_upsampler)({up_args}),\n"
            f"    factor={factor},\n"
            f"    out_channels={channels},\n"
            f"    levels={levels},\n"
            f"    top_block={(top or None)!r},\n"
            f"{norm_args})\n"
            + ("train.init_checkpoint = \"\"\n" if "train" in stock else ""))
    summary = [f"stock: {load} (re-exports {', '.join(names)})",
               f"model.backbone: {old_backbone} -> UpsampledViTBackbone (ViT {vit}, pretrained {vit_weights!r}; "
               f"upsampler {upsampler} x{factor}, pretrained {up_weights!r})",
               f"model.backbone pyramid: levels {levels}, top_block {(top or None)!r}, out_channels {channels}: "
               f"gives {features}, which " + ", ".join(heads) + " read",
               f"guidance normalisation: from model.pixel_mean, pixel_std, input_format "
               f"({', '.join(repr(stock.model.get(k)) for k in ('pixel_mean', 'pixel_std', 'input_format'))})"]
    if "train" in stock:
        summary.append(f"train.init_checkpoint: {stock.train.get('init_checkpoint')!r} -> '' (the ViT and "
                       f"upsampler bring their own)")
    return text, summary
