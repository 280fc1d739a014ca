"""Checkpoint sources (release names, URLs, local paths) and strict, explained loading.

URLs go through ``torch.hub.load_state_dict_from_url``: the file lands in torch.hub's cache
(``$TORCH_HOME/hub/checkpoints``) with a progress bar and is reused afterwards. ``file://``
URLs take the same path, which is how the tests exercise it without a network.
"""
import os
from typing import Dict, Mapping, Optional
from urllib.error import URLError

import torch
import torch.nn as nn


class CheckpointMismatchError(ValueError):
    """A checkpoint whose keys or shapes do not match the model; the message lists them."""


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://", "file://"))


def load_checkpoint_file(source: str, releases: Mapping[str, str], progress: bool = True,
                         file_name: Optional[str] = None) -> dict:
    """Load the object stored at ``source``: a release name in ``releases``, a URL or a path.

    Returns whatever the file holds (a state_dict, or a training checkpoint dict), on CPU.
    """
    if source in releases:
        source = releases[source]
    if is_url(source):
        try:
            return torch.hub.load_state_dict_from_url(source, map_location="cpu", progress=progress,
                                                      weights_only=True, file_name=file_name)
        except URLError as error:
            cache = hub_cache_path(file_name or os.path.basename(source))
            raise OSError(f"could not download {source} ({error.reason}). Without network access, fetch "
                          f"the file elsewhere and pass its path as pretrained=, or copy it to {cache}") from error
    if not os.path.isfile(source):
        names = ", ".join(repr(n) for n in releases)
        raise FileNotFoundError(f"pretrained={source!r} is neither a release name ({names}), a URL, "
                                f"nor an existing file")
    return torch.load(source, map_location="cpu", weights_only=True)


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


def load_state_dict_strict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """``model.load_state_dict(state_dict, strict=True)`` with a readable error first."""
    check_state_dict(model, state_dict, source)
    model.load_state_dict(state_dict, strict=True)


def hub_cache_path(filename: str) -> str:
    """Where torch.hub caches a downloaded checkpoint file of this name."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", filename)


def cached_release(name: str, releases: Mapping[str, str]) -> Optional[str]:
    """Path of a release already in torch.hub's cache, or ``None`` (never downloads)."""
    path = hub_cache_path(os.path.basename(releases[name]))
    return path if os.path.isfile(path) else None
