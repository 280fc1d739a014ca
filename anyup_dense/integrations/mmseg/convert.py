"""Convert a stock mmseg config into one with an upsampler neck (``tools/add_upsampler.py``).

The written config inherits the stock one (``_base_``) and changes only what must change:

* the segmentor type: ``EncoderDecoder`` -> ``GuidedEncoderDecoder``, ``DepthEstimator`` ->
  ``GuidedDepthEstimator`` (other segmentors are refused);
* the neck: an ``UpsamplerNeck`` that upsamples backbone output ``in_index`` (default: the
  last, coarsest one) and gives as many maps, at the same strides, as the head received
  before (from the backbone, or from the stock neck, which it replaces with ``_delete_=True``);
* every ``*in_channels`` key of the heads: all neck maps have the channels of the upsampled
  level. Strides and channels are measured by building the backbone (and stock neck) with
  random weights and running it on a dummy image, not guessed;
* ``custom_imports``: adds ``anyup_dense.integrations.mmseg``.

The guidance normalisation needs no key: the Guided* segmentors hand the data
preprocessor's mean / std / channel order to the neck when the model is built.
``cfg_options`` (dotted keys, as mmseg's ``--cfg-options``) are applied before measuring
and written into the new config too (e.g. a smaller backbone for a quick test).
"""
import copy
import pathlib
import pprint
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from mmengine import Config
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

GUIDED = {"EncoderDecoder": "GuidedEncoderDecoder", "DepthEstimator": "GuidedDepthEstimator",
          "GuidedEncoderDecoder": "GuidedEncoderDecoder", "GuidedDepthEstimator": "GuidedDepthEstimator",
          "GuidedNormalEstimator": "GuidedNormalEstimator"}
HEAD_KEYS = ("decode_head", "auxiliary_head")
IMPORT = "anyup_dense.integrations.mmseg"
PROBE_SIZE = 128  # dummy image side: divisible by every stride up to 32
TRAINING_FREE = ("bilinear", "bicubic")


def resolve_config_path(source: str) -> pathlib.Path:
    """A config path, or ``mmseg::REL`` for mmseg's own configs (in the installed package)."""
    if source.startswith("mmseg::"):
        import mmseg

        path = pathlib.Path(mmseg.__file__).parent / ".mim" / "configs" / source[len("mmseg::"):]
    else:
        path = pathlib.Path(source).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"config {source!r} not found (looked at {path})")
    return path


def nested(options: Dict[str, Any]) -> dict:
    """``{'a.b': 1}`` -> ``{'a': {'b': 1}}`` (the form a config file writes)."""
    out: dict = {}
    for key, value in options.items():
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def merge(base: dict, update: dict) -> dict:
    """Recursive dict merge (``update`` wins), as mmengine merges a config into its base."""
    out = dict(base)
    for key, value in update.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _probe_modules(model_cfg) -> Tuple[torch.nn.Module, Optional[torch.nn.Module]]:
    """The stock backbone and neck with random weights (nothing is downloaded: the modules'
    ``init_weights`` is never called)."""
    init_default_scope("mmseg")
    from mmengine.model import revert_sync_batchnorm

    backbone = revert_sync_batchnorm(MODELS.build(copy.deepcopy(model_cfg.backbone)))
    neck = model_cfg.get("neck")
    neck = revert_sync_batchnorm(MODELS.build(copy.deepcopy(neck))) if neck else None
    for module in (backbone, neck):
        if module is not None:
            module.eval()  # not chained: some mmseg backbones' train() returns None
    return backbone, neck


def measure(model_cfg, size: int = PROBE_SIZE) -> Tuple[List[Tuple[int, int]], List[Tuple[int, int]]]:
    """(backbone outputs, head inputs) of the stock model as ``(channels, stride)`` pairs,
    from one forward pass on a zero image [1,3,size,size]."""
    backbone, neck = _probe_modules(model_cfg)
    with torch.no_grad():
        maps = list(backbone(torch.zeros(1, 3, size, size)))
        head_inputs = list(neck(maps)) if neck is not None else maps
    described = [[(int(m.shape[1]), round(size / m.shape[-1])) for m in group] for group in (maps, head_inputs)]
    return described[0], described[1]


def _head_changes(head: dict, channels: int) -> dict:
    """The ``*in_channels`` keys of one head config set to ``channels`` (lists: one per input)."""
    changes = {}
    for key, value in head.items():
        if key.endswith("in_channels") and isinstance(value, (int, list, tuple)) and not isinstance(value, bool):
            changes[key] = [channels] * len(value) if isinstance(value, (list, tuple)) else channels
    return changes


def _heads(model_cfg, channels: int, summary: List[str]) -> dict:
    """``model.<head>`` updates; a list of heads is written out whole (mmengine replaces lists)."""
    update = {}
    for name in HEAD_KEYS:
        head = model_cfg.get(name)
        if not head:
            continue
        heads = head if isinstance(head, (list, tuple)) else [head]
        changed = []
        for i, one in enumerate(heads):
            changes = _head_changes(one, channels)
            for key, value in changes.items():
                where = f"model.{name}" + (f"[{i}]" if isinstance(head, (list, tuple)) else "")
                summary.append(f"{where}.{key}: {one[key]} -> {value}")
            changed.append(changes if not isinstance(head, (list, tuple)) else merge(one.to_dict(), changes))
        if isinstance(head, (list, tuple)):
            update[name] = changed
        elif changed[0]:
            update[name] = changed[0]
    return update


def _pretrained_value(upsampler: str, pretrained: Any) -> Any:
    """``'default'``: the upsampler's released weights (``True``), none for the training-free
    baselines."""
    if pretrained == "default":
        return None if upsampler in TRAINING_FREE else True
    return pretrained


def convert(source: str, upsampler: str, in_index: int = -1, pretrained: Any = "default",
            upsampler_kwargs: Optional[dict] = None, cfg_options: Optional[Dict[str, Any]] = None,
            probe_size: int = PROBE_SIZE) -> Tuple[dict, List[str]]:
    """The top-level keys of the converted config (``_base_`` first) and a summary line per
    change. See the module docstring."""
    path = resolve_config_path(source)
    cfg = Config.fromfile(str(path))
    options = dict(cfg_options or {})
    if options:
        cfg.merge_from_dict(options)
    model = cfg.model
    if model.type not in GUIDED:
        raise ValueError(f"model.type {model.type!r} is not supported: the converter handles "
                         f"{sorted(k for k in GUIDED if not k.startswith('Guided'))} segmentors")
    backbone_maps, head_inputs = measure(model, probe_size)
    if not -len(backbone_maps) <= in_index < len(backbone_maps):
        raise ValueError(f"in_index={in_index} is out of range: the backbone gives {len(backbone_maps)} maps")
    channels = backbone_maps[in_index][0]
    strides = tuple(stride for _, stride in head_inputs)
    summary = [f"model.type: {model.type} -> {GUIDED[model.type]}"]
    neck = dict(type="UpsamplerNeck", upsampler=upsampler, in_index=in_index, out_strides=strides,
                **(upsampler_kwargs or {}))
    pretrained = _pretrained_value(upsampler, pretrained)
    if pretrained is not None:
        neck["pretrained"] = pretrained
    if model.get("neck"):
        neck = dict(_delete_=True, **neck)
        summary.append(f"model.neck: {model.neck.type} replaced (_delete_=True)")
    summary.append(f"model.neck: {upsampler} upsamples backbone map {in_index} ({channels} channels, stride "
                   f"{backbone_maps[in_index][1]}) to {len(strides)} map(s) at strides {list(strides)}, as the "
                   f"heads received before")
    model_update = dict(type=GUIDED[model.type], neck=neck, **_heads(model, channels, summary))
    imports = list(cfg.get("custom_imports", {}).get("imports", []))
    summary.append("guidance normalisation: from model.data_preprocessor at build time "
                   f"({_describe_preprocessor(model.get('data_preprocessor'))})")
    keys = {"_base_": [source if source.startswith("mmseg::") else str(path)]}
    keys.update(nested(options))
    keys["model"] = merge(keys.get("model", {}), model_update)
    keys["model"]["neck"] = neck  # options for the stock neck served only to measure it
    if IMPORT not in imports:
        keys["custom_imports"] = dict(imports=imports + [IMPORT], allow_failed_imports=False)
        summary.append(f"custom_imports: + {IMPORT}")
    return keys, summary


def _describe_preprocessor(preprocessor) -> str:
    if not preprocessor:
        return "none: mmseg's ImageNet values"
    return (f"mean={preprocessor.get('mean')}, std={preprocessor.get('std')}, "
            f"bgr_to_rgb={preprocessor.get('bgr_to_rgb', False) or preprocessor.get('rgb_to_bgr', False)}")


def config_text(keys: dict, header: Sequence[str] = ()) -> str:
    """Python source of a config with these top-level keys."""
    lines = [f"# {line}" for line in header]
    lines += [f"{key} = {pprint.pformat(value, width=100, sort_dicts=False)}" for key, value in keys.items()]
    return "\n".join(lines) + "\n"
