"""One loader for every checkpoint source and file layout.

A source is ``True`` (the default release: the first entry of the table), a release name, a
URL (``http(s)://`` or ``file://``) or a local path (``str`` or ``os.PathLike``). A URL is
downloaded once into torch.hub's cache (:mod:`anyup_dense.checkpoints.cache`; a release under
its ``file_name``, another URL under its last path component).

A release is read as its ``layout`` says (:data:`~anyup_dense.checkpoints.releases.LAYOUTS`).
A path or URL is read as safetensors or torch file by its first bytes, and a dict holding the
``weights_key`` of one of the table's releases (a Lightning ``"state_dict"``, JAFAR's
``"jafar"``) is unwrapped; anything else is returned as it is, for strict loading to judge.
"""
import os
from typing import Dict, Mapping, Optional, Sequence, Tuple

import torch

from anyup_dense.checkpoints.cache import download, hub_cache_path, is_url
from anyup_dense.checkpoints.reading import is_safetensors, read_checkpoint, read_safetensors
from anyup_dense.checkpoints.releases import Release, Source, find_release, url_file_name
from anyup_dense.checkpoints.strict import CheckpointMismatchError

Table = Mapping[str, Release]


def load_checkpoint(source: Source, table: Table, progress: bool = True, safe_globals: Sequence = ()) -> Mapping:
    """What the file at ``source`` holds, on CPU: a state_dict or a training checkpoint dict.

    Torch files are read with ``weights_only=True``; ``safe_globals`` extends that allow-list
    for this call only (entries as for ``torch.serialization.safe_globals``: a class, or a
    ``(stand_in, "module.Name")`` pair that rebuilds a class without importing its package).
    Raises :class:`~anyup_dense.checkpoints.cache.CheckpointDownloadError` /
    :class:`~anyup_dense.checkpoints.reading.CheckpointReadError` (both ``OSError``),
    ``FileNotFoundError`` for a path that names nothing, and ``ValueError`` for a file that
    holds no dict.
    """
    return _open(source, table, progress, safe_globals)[0]


def load_weights(source: Source, table: Table, progress: bool = True,
                 safe_globals: Sequence = ()) -> Dict[str, torch.Tensor]:
    """The state_dict stored at ``source`` (see the module docstring for the layouts). A release
    file without its layout's ``weights_key`` raises
    :class:`~anyup_dense.checkpoints.strict.CheckpointMismatchError`."""
    checkpoint, release, where = _open(source, table, progress, safe_globals)
    if release is None:
        for key in dict.fromkeys(r.weights_key for r in table.values() if r.weights_key):
            if isinstance(checkpoint.get(key), Mapping):
                return dict(checkpoint[key])
        return dict(checkpoint)
    if release.weights_key is None:
        return dict(checkpoint)
    if not isinstance(checkpoint.get(release.weights_key), Mapping):
        raise CheckpointMismatchError(
            f"{where} is not laid out as release {release.name!r} ({release.layout}: the weights under "
            f"{release.weights_key!r}); its keys: {', '.join(sorted(map(str, checkpoint))[:8]) or 'none'}")
    return dict(checkpoint[release.weights_key])


def cached_release(release: Release) -> Optional[str]:
    """Path of ``release`` in torch.hub's cache, or ``None`` (never downloads)."""
    path = hub_cache_path(release.file_name)
    return path if os.path.isfile(path) else None


def _open(source: Source, table: Table, progress: bool, safe_globals: Sequence
          ) -> Tuple[Mapping, Optional[Release], str]:
    """(what the file holds, the release ``source`` names or ``None``, the file in words)."""
    release = find_release(source, table)
    path, origin, remedy = _local_file(source, release, table, progress)
    where = f"{origin} {path}"
    if release.layout == "safetensors" if release is not None else is_safetensors(path):
        return read_safetensors(path, origin, remedy), release, where
    with torch.serialization.safe_globals(list(safe_globals)):
        checkpoint = read_checkpoint(path, origin, remedy)
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{where} holds a {type(checkpoint).__name__}; expected a state_dict "
                         f"(a dict of tensors) or a checkpoint dict")
    return checkpoint, release, where


def _local_file(source: Source, release: Optional[Release], table: Table, progress: bool) -> Tuple[str, str, str]:
    """(local path, what it is in words, what to do when it is broken); downloads a URL once."""
    location = release.url if release is not None else os.fspath(source)
    if is_url(location):
        path = hub_cache_path(release.file_name if release is not None else url_file_name(location))
        if not os.path.isfile(path):
            download(location, path, progress)
        return path, f"the torch.hub cache file for {location}", (
            f"It may be a broken download: delete {path} so that the next call downloads it again, "
            f"or replace it with a good copy. ")
    if not os.path.isfile(location):
        names = ", ".join(repr(n) for n in table) or "none"
        raise FileNotFoundError(f"pretrained={source!r} is neither a release name (releases: {names}), "
                                f"a URL, nor an existing file")
    return location, "checkpoint file", ""
