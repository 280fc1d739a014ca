"""yacs side: the ``MODEL.VIT``, ``MODEL.UPSAMPLER``, ``MODEL.SFP`` and ``SOLVER`` keys we add,
and the ``BACKBONE_REGISTRY`` entry that reads them.

    cfg = get_cfg(); add_anyup_config(cfg); cfg.merge_from_file(...)
    cfg.MODEL.BACKBONE.NAME = "build_upsampled_vit_backbone"

``PRETRAINED`` strings: ``""`` = random init, ``"default"`` = the default weights (timm's hub
weights for the ViT, the released weights of an upsampler: ``pretrained=True``), anything
else is passed as is (a release name such as
``"anyup_multi_backbone"`` or a local path). ``KWARGS`` nodes accept any keys and are passed
to ``timm.create_model`` / ``build_upsampler``. Upsampler arguments that follow from the ViT
(:data:`FROM_VIT`: FeatSharp's ``dim``, ``patch_size``, ``model_resolution``) are derived
from it unless ``KWARGS`` sets them; a contradicting value fails when the model is built.
Weights that cannot be fetched (offline) raise ``OSError`` naming the ``PRETRAINED`` key.
"""
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from detectron2.config import CfgNode
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY

from anyup_dense.backbones.timm_vit import TimmViT
from anyup_dense.integrations.detectron2.backbone import UpsampledViTBackbone
from anyup_dense.upsamplers import build_upsampler


def add_anyup_config(cfg: CfgNode) -> CfgNode:
    """Add our keys (with defaults) to a Detectron2 config in place; returns ``cfg``."""
    cfg.MODEL.VIT = CfgNode()
    cfg.MODEL.VIT.NAME = "vit_small_patch14_dinov2.lvd142m"
    cfg.MODEL.VIT.PRETRAINED = ""
    cfg.MODEL.VIT.OUT_INDEX = -1          # block whose output feeds the upsampler
    cfg.MODEL.VIT.FINAL_NORM = True       # apply the ViT's last LayerNorm to that output
    cfg.MODEL.VIT.FROZEN = True
    cfg.MODEL.VIT.STRIDE = 16             # nominal stride of the ViT map (see backbone.py)
    cfg.MODEL.VIT.KWARGS = CfgNode(new_allowed=True)

    cfg.MODEL.UPSAMPLER = CfgNode()
    cfg.MODEL.UPSAMPLER.NAME = ""         # "" = no upsampler (baseline, FACTOR must be 1)
    cfg.MODEL.UPSAMPLER.FACTOR = 1
    cfg.MODEL.UPSAMPLER.PRETRAINED = ""
    cfg.MODEL.UPSAMPLER.FROZEN = True
    cfg.MODEL.UPSAMPLER.KWARGS = CfgNode(new_allowed=True)

    cfg.MODEL.SFP = CfgNode()             # simple feature pyramid
    cfg.MODEL.SFP.OUT_CHANNELS = 256
    cfg.MODEL.SFP.LEVELS = [2, 3, 4, 5]
    cfg.MODEL.SFP.TOP_BLOCK = "maxpool"   # "maxpool" (+p6), "p6p7" (+p6, p7) or "" (none)
    cfg.MODEL.SFP.NORM = "LN"

    cfg.SOLVER.OPTIMIZER = "SGD"          # "SGD" or "ADAMW"
    cfg.SOLVER.VIT_LAYER_DECAY = 1.0      # lr multiplier per ViT block towards the input
    cfg.SOLVER.BETAS = (0.9, 0.999)       # AdamW only
    return cfg


def parse_pretrained(value: str) -> Union[None, bool, str]:
    """``""`` -> ``None``; ``"default"`` -> ``True``; otherwise the string itself.

    (A yaml ``"True"`` would not survive: yacs turns it into a bool.)"""
    if value == "":
        return None
    return True if value == "default" else value


def _kwargs(node: CfgNode) -> dict:
    return {key: (list(v) if isinstance(v, tuple) else v) for key, v in node.items()}


def vit_resolution(vit: TimmViT) -> int:
    """The square input size the ViT was built for (timm's ``img_size``)."""
    height, width = vit.model.patch_embed.img_size
    if height != width:
        raise ValueError(f"the ViT {vit.model_name} was built for {height}x{width} inputs; an upsampler that "
                         f"needs a square model_resolution must get it in MODEL.UPSAMPLER.KWARGS")
    return int(height)


# Upsampler arguments derived from the ViT unless MODEL.UPSAMPLER.KWARGS sets them.
FROM_VIT: Dict[str, Dict[str, Callable[[TimmViT], int]]] = {
    "featsharp": {"dim": lambda vit: vit.embed_dim, "patch_size": lambda vit: vit.patch_size,
                  "model_resolution": vit_resolution},
}


def _fetch(build: Callable, key: str, value: str):
    """``build()``; with weights to load (``value`` set), a failure to fetch or read them
    (``OSError``) becomes one naming the config ``key``."""
    try:
        return build()
    except OSError as err:
        if not value:
            raise
        raise OSError(f"{key} {value!r}: the weights could not be loaded ({type(err).__name__}: {err}). "
                      f"Without network, set {key} to a local file, or to \"\" when MODEL.WEIGHTS holds "
                      f"these weights") from err


def vit_from_cfg(cfg: CfgNode) -> TimmViT:
    """The ``TimmViT`` described by ``cfg.MODEL.VIT``."""
    c = cfg.MODEL.VIT
    return _fetch(lambda: TimmViT(c.NAME, pretrained=parse_pretrained(c.PRETRAINED), out_indices=(c.OUT_INDEX,),
                                  norm=c.FINAL_NORM, frozen=c.FROZEN, **_kwargs(c.KWARGS)),
                  "MODEL.VIT.PRETRAINED", c.PRETRAINED)


def upsampler_from_cfg(cfg: CfgNode, vit: TimmViT):
    """The upsampler described by ``cfg.MODEL.UPSAMPLER`` for ``vit`` (``None`` when ``NAME`` is empty).

    ``pretrained`` is passed only when ``PRETRAINED`` is set (the training-free baselines take
    none); the :data:`FROM_VIT` arguments ``KWARGS`` leaves out are taken from ``vit``."""
    c = cfg.MODEL.UPSAMPLER
    if not c.NAME:
        return None
    kwargs = _kwargs(c.KWARGS)
    for key, derive in FROM_VIT.get(c.NAME.lower(), {}).items():
        if key not in kwargs:
            kwargs[key] = derive(vit)
    if c.PRETRAINED:
        kwargs["pretrained"] = parse_pretrained(c.PRETRAINED)
    return _fetch(lambda: build_upsampler(c.NAME, **kwargs), "MODEL.UPSAMPLER.PRETRAINED", c.PRETRAINED)


# META_ARCHITECTURE -> the config nodes whose IN_FEATURES read the backbone's levels
HEAD_FEATURES = {"RetinaNet": ("RETINANET",), "GeneralizedRCNN": ("RPN", "ROI_HEADS"), "ProposalNetwork": ("RPN",)}


def pyramid_for(features: Sequence[str]) -> Tuple[List[int], str]:
    """``(MODEL.SFP.LEVELS, MODEL.SFP.TOP_BLOCK)`` giving the p-levels ``features``: the top
    block makes levels above p5 (``"maxpool"``: p6; ``"p6p7"``: p6 and p7), e.g.
    ``p3..p7 -> ([3, 4, 5], "p6p7")``, ``p2..p6 -> ([2, 3, 4, 5], "maxpool")``."""
    numbers = sorted({int(name[1:]) for name in features})
    top = "p6p7" if numbers[-1] >= 7 else "maxpool" if numbers[-1] == 6 else ""
    last = {"p6p7": 5, "maxpool": 5, "": numbers[-1]}[top]
    return list(range(numbers[0], last + 1)), top


def head_features(cfg: CfgNode) -> Dict[str, List[str]]:
    """``{config key: levels}`` the heads of ``cfg.MODEL.META_ARCHITECTURE`` read."""
    return {f"MODEL.{node}.IN_FEATURES": list(cfg.MODEL[node].IN_FEATURES)
            for node in HEAD_FEATURES.get(cfg.MODEL.META_ARCHITECTURE, ())}


def check_head_features(cfg: CfgNode, backbone: UpsampledViTBackbone) -> None:
    """``ValueError`` naming the keys to set when a head reads a level the pyramid does not give
    (e.g. RetinaNet's p7 with the default p2..p6 pyramid)."""
    have = list(backbone.output_shape())
    for key, wanted in head_features(cfg).items():
        missing = [name for name in wanted if name not in have]
        if missing:
            levels, top = pyramid_for(wanted)
            raise ValueError(f"{key} reads {missing}, which the pyramid does not give (it gives {have} from "
                             f"MODEL.SFP.LEVELS {list(cfg.MODEL.SFP.LEVELS)}, MODEL.SFP.TOP_BLOCK "
                             f"{cfg.MODEL.SFP.TOP_BLOCK!r}): set MODEL.SFP.LEVELS {levels} and MODEL.SFP.TOP_BLOCK "
                             f"{top!r}")


@BACKBONE_REGISTRY.register()
def build_upsampled_vit_backbone(cfg: CfgNode, input_shape: Optional[ShapeSpec] = None) -> UpsampledViTBackbone:
    """``MODEL.BACKBONE.NAME: build_upsampled_vit_backbone``; reads the keys of :func:`add_anyup_config`."""
    if input_shape is not None and input_shape.channels not in (None, 3):
        raise ValueError(f"the ViT backbone takes 3-channel images, got input_shape {input_shape}")
    vit = vit_from_cfg(cfg)
    backbone = UpsampledViTBackbone(
        vit, upsampler_from_cfg(cfg, vit), cfg.MODEL.UPSAMPLER.FACTOR,
        upsampler_frozen=cfg.MODEL.UPSAMPLER.FROZEN, vit_stride=cfg.MODEL.VIT.STRIDE,
        out_channels=cfg.MODEL.SFP.OUT_CHANNELS, levels=cfg.MODEL.SFP.LEVELS,
        top_block=cfg.MODEL.SFP.TOP_BLOCK or None, norm=cfg.MODEL.SFP.NORM,
        pixel_mean=cfg.MODEL.PIXEL_MEAN, pixel_std=cfg.MODEL.PIXEL_STD, input_format=cfg.INPUT.FORMAT)
    check_head_features(cfg, backbone)
    return backbone
