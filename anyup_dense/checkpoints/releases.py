"""Release records: where an official checkpoint lives, how its file is laid out, what it fits.

Every upsampler with official weights keeps one table, ``RELEASES = releases(Release(...), ...)``,
in its model file; the first entry is the default (``pretrained=True``). The loader
(:mod:`anyup_dense.checkpoints.loader`) reads a release by its ``layout``; the comparison zoo
picks a release by ``backbones``.
"""
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple, Union
from urllib.parse import urlparse

Source = Union[bool, str, os.PathLike]

# layout -> where the weights are in the file: None (the file is the flat state_dict) or the
# key of the dict that holds them ("state_dict" for Lightning; per release for training dicts).
LAYOUTS: Dict[str, Optional[str]] = {
    "state_dict": None,  # torch.save(state_dict)
    "lightning": "state_dict",  # a PyTorch Lightning checkpoint
    "training_dict": None,  # a torch training dict; the weights under Release.weights_key
    "safetensors": None,  # a flat safetensors file
}


def url_file_name(url: str) -> str:
    """The cache file name torch.hub gives a URL: the last component of its path."""
    return os.path.basename(urlparse(url).path)


def hf_url(repo_id: str, filename: str) -> str:
    """The download URL of ``filename`` on the ``main`` branch of Hugging Face repo ``repo_id``."""
    return f"https://huggingface.co/{repo_id}/resolve/main/{filename}"


@dataclass(frozen=True)
class Release:
    """One official checkpoint (like timm's pretrained configs).

    Args:
        name: the name ``pretrained=`` takes.
        url: where the file is downloaded from (:func:`hf_url` for Hugging Face files).
        layout: one of :data:`LAYOUTS`, as the official file is written.
        weights_key: the key of the weights in a ``"training_dict"`` (``"lightning"``: always
            ``"state_dict"``; the other layouts have none).
        file_name: its name in torch.hub's cache (default: the URL's last path component).
        backbones: the timm backbone names whose features it was trained on; ``None`` for a
            feature-agnostic release (any backbone).
        trained_on: the features it was trained on, in words.
        licence: the licence the official repository states (SPDX identifier).
        build_kwargs: constructor arguments the file implies (e.g. LoftUp's ``dim``/``lr_size``).
    """
    name: str
    url: str
    layout: str = "state_dict"
    weights_key: Optional[str] = None
    file_name: str = ""
    backbones: Optional[Tuple[str, ...]] = None
    trained_on: str = ""
    licence: str = ""
    build_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"Release {self.name!r}: layout={self.layout!r}; expected one of {', '.join(LAYOUTS)}")
        if self.layout == "training_dict" and not self.weights_key:
            raise ValueError(f"Release {self.name!r}: layout='training_dict' needs weights_key= (the key of the "
                             f"weights in the file)")
        if self.layout != "training_dict" and self.weights_key not in (None, LAYOUTS[self.layout]):
            raise ValueError(f"Release {self.name!r}: weights_key={self.weights_key!r} contradicts "
                             f"layout={self.layout!r} (expected {LAYOUTS[self.layout]!r})")
        if self.weights_key is None:
            object.__setattr__(self, "weights_key", LAYOUTS[self.layout])
        if not self.file_name:
            object.__setattr__(self, "file_name", url_file_name(self.url))
        if isinstance(self.backbones, str):
            raise ValueError(f"Release {self.name!r}: backbones must be a tuple of timm names or None, "
                             f"got the string {self.backbones!r}")


def releases(*records: Release) -> Dict[str, Release]:
    """An upsampler's release table: name -> :class:`Release`, in the given order (the first is
    the default); names must be unique."""
    table: Dict[str, Release] = {}
    for record in records:
        if record.name in table:
            raise ValueError(f"release name {record.name!r} appears twice")
        table[record.name] = record
    return table


def find_release(source: Source, table: Mapping[str, Release]) -> Optional[Release]:
    """The release ``source`` names: ``True`` -> the first (default) one, a release name -> its
    record; ``None`` for a path or URL (an ``os.PathLike`` is always a path)."""
    if source is True:
        if not table:
            raise ValueError("pretrained=True: there is no default release for this model; "
                             "pass a path or URL to a checkpoint")
        return next(iter(table.values()))
    if isinstance(source, os.PathLike):
        return None
    if isinstance(source, str):
        return table.get(source)
    names = ", ".join(repr(n) for n in table) or "none"
    raise ValueError(f"pretrained={source!r}: expected True, a release name (releases: {names}), "
                     f"a URL or a path (str or os.PathLike)")


def with_release_kwargs(source: Source, table: Mapping[str, Release], kwargs: Mapping[str, Any]) -> Dict[str, Any]:
    """``kwargs`` completed by the ``build_kwargs`` of the release ``source`` names (unchanged
    for a path or URL); a given value (not ``None``) that differs raises ``ValueError``."""
    merged = dict(kwargs)
    release = None if source is None or source is False else find_release(source, table)
    if release is not None:
        for key, value in release.build_kwargs.items():
            if merged.get(key) is not None and merged[key] != value:
                raise ValueError(f"{key}={merged[key]!r} does not match release {release.name!r} ({key}={value!r})")
            merged[key] = value
    return merged


def release_for_backbone(table: Mapping[str, Release], backbone: str) -> Optional[Release]:
    """The first release trained on timm ``backbone``, else the first feature-agnostic one
    (``backbones=None``), else ``None``."""
    records = list(table.values())
    return (next((r for r in records if r.backbones is not None and backbone in r.backbones), None)
            or next((r for r in records if r.backbones is None), None))
