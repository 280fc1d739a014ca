"""Training configuration: loop/data settings shared by every recipe.

Each recipe subclasses :class:`TrainConfig`, adds its own fields and overrides defaults
with its published hyper-parameters. The whole config is written into every checkpoint's
training-state file, and ``tools/train_upsampler.py`` derives its command-line options from
the fields (``--max-steps``, ``--backbone-kwargs '{"depth": 2}'``, ...).
"""
import dataclasses
import json
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, Tuple


@dataclass
class TrainConfig:
    """Shared settings. ``lr`` is the base learning rate; the schedule multiplies it by a
    linear warm-up from ``warmup_start_factor`` over ``warmup_steps`` and, with
    ``cosine_decay``, a cosine to 0 at ``max_steps``. Gradients are clipped to
    ``early_clip_norm`` for the first ``early_clip_steps`` steps and to ``clip_norm``
    afterwards (0 = no clipping). ``batch_size`` is per process. A recipe's config
    subclass overrides only the defaults its published recipe changes.
    ``optimizer`` names an entry of ``anyup_dense.training.loop.OPTIMIZERS``."""

    data: str = ""
    backbone: str = "vit_small_patch14_dinov2.lvd142m"
    backbone_weights: str = "timm"
    backbone_kwargs: Dict[str, Any] = field(default_factory=dict)
    upsampler_kwargs: Dict[str, Any] = field(default_factory=dict)
    out_dir: str = "work_dirs/upsampler"
    resume: str = ""
    max_steps: int = 100_000
    batch_size: int = 4
    optimizer: str = "adamw"
    lr: float = 2e-4
    betas: Tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    warmup_steps: int = 0
    warmup_start_factor: float = 1.0
    cosine_decay: bool = False
    early_clip_steps: int = 0
    early_clip_norm: float = 0.0
    clip_norm: float = 0.0
    seed: int = 0
    num_workers: int = 4
    ckpt_every: int = 20_000
    log_every: int = 10
    min_image_side: int = 0
    precision: str = "fp32"
    device: str = "auto"


def config_to_dict(config: TrainConfig) -> Dict[str, Any]:
    """JSON-compatible dict of every field (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_from_dict(cls: type, values: Dict[str, Any]) -> TrainConfig:
    """Inverse of :func:`config_to_dict`; unknown keys raise ``ValueError``."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {', '.join(unknown)}")
    converted = {k: tuple(v) if typing.get_origin(hints[k]) is tuple else v for k, v in values.items()}
    return cls(**converted)


def parse_field(cls: type, name: str, text: str) -> Any:
    """Parse a command-line string for field ``name`` of ``cls`` (JSON for dicts/tuples)."""
    hint = typing.get_type_hints(cls)[name]
    origin = typing.get_origin(hint)
    if hint is bool:
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"--{name.replace('_', '-')} expects true/false, got {text!r}")
        return text.lower() in ("true", "1", "yes")
    if origin is tuple:
        return tuple(json.loads(text))
    if origin is dict or hint is dict:
        value = json.loads(text)
        if not isinstance(value, dict):
            raise ValueError(f"--{name.replace('_', '-')} expects a JSON object, got {text!r}")
        return value
    return hint(text)
