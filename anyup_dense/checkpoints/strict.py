"""Strict state_dict loading with an error that lists every missing, unexpected and mis-shaped key."""
from typing import Dict, Mapping

import torch
import torch.nn as nn

from anyup_dense.checkpoints.kinds import foreign_checkpoint_kind


class CheckpointMismatchError(ValueError):
    """A checkpoint whose keys or shapes do not match the model; the message lists them."""


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Raise :class:`CheckpointMismatchError` listing missing, unexpected and mis-shaped keys."""
    expected: Dict[str, torch.Tensor] = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    misshaped = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(state_dict)
        if tuple(state_dict[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or misshaped:
        parts = [f"{source} does not match {type(model).__name__}:"]
        for title, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                            ("shape mismatches", misshaped)):
            if keys:
                parts.append(f"  {title} ({len(keys)}): " + ", ".join(keys))
        raise CheckpointMismatchError("\n".join(parts))


def load_state_dict_strict(model: nn.Module, state_dict: Mapping[str, torch.Tensor],
                           source: str = "checkpoint") -> None:
    """``model.load_state_dict(state_dict, strict=True)`` with a readable error first; one that
    names the checkpoint's kind when it is a recognised other kind (:func:`foreign_checkpoint_kind`)."""
    try:
        check_state_dict(model, state_dict, source)
    except CheckpointMismatchError as error:
        kind = foreign_checkpoint_kind(state_dict)
        if kind is None or foreign_checkpoint_kind(model.state_dict()) == kind:  # same kind: a plain mismatch
            raise
        raise CheckpointMismatchError(f"{source} is {kind}. {type(model).__name__} loads its own state_dict (keys "
                                      f"such as {_sample_keys(model)}).\n{error}") from None
    model.load_state_dict(state_dict, strict=True)


def _sample_keys(model: nn.Module, count: int = 3) -> str:
    keys = list(model.state_dict())[:count]
    return ", ".join(repr(k) for k in keys) + (", ..." if len(model.state_dict()) > count else "") if keys else "none"
