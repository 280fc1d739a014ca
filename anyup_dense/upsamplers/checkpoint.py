"""Checkpoint sources (release names, URLs, local paths) and strict, explained loading.

A source is ``True`` (the default release: the first entry of ``releases``), a release name,
a URL (``http(s)://`` or ``file://``) or a local path (``str`` or ``os.PathLike``).

URLs are downloaded once into torch.hub's cache (``$TORCH_HOME/hub/checkpoints``, file name
as torch.hub picks it) with torch.hub's progress bar, and reused afterwards. A download goes
to a temporary ``.partial`` file that is renamed only when complete, so an interrupted one
never leaves a truncated file in the cache. Every network wait (connect, each read) gives up
after :func:`download_timeout` seconds: ``DEFAULT_DOWNLOAD_TIMEOUT`` (60 s), or the value of
the environment variable ``ANYUP_DENSE_DOWNLOAD_TIMEOUT``. Every failure (timeout, refused or
dropped connection, HTTP error, truncated body) raises :class:`CheckpointDownloadError`, which
names the URL and the two offline remedies: pass a local path, or copy the file to its exact
cache path. A file that cannot be read raises :class:`CheckpointReadError` naming it.

A checkpoint of another kind (an mmengine/mmseg training checkpoint, an mmseg model's or a
timm backbone's state_dict, a Detectron2 checkpoint) is named as such in both errors
(:func:`foreign_checkpoint_kind`, :func:`foreign_pickle_kind`), with what to pass instead.
"""
import http.client
import os
import pickle
import pickletools
import sys
import uuid
import zipfile
from typing import BinaryIO, Dict, Mapping, Optional, Sequence, Union
from urllib.error import HTTPError, URLError
from urllib.parse import urlparse
from urllib.request import Request, urlopen

import torch
import torch.nn as nn
from torch.hub import tqdm  # tqdm when installed, else torch.hub's silent stand-in

Source = Union[bool, str, os.PathLike]

DEFAULT_DOWNLOAD_TIMEOUT = 60.0
DOWNLOAD_TIMEOUT_ENV = "ANYUP_DENSE_DOWNLOAD_TIMEOUT"
OFFLINE_ENVS = ("ANYUP_DENSE_OFFLINE", "HF_HUB_OFFLINE")
_CHUNK = 1 << 16


class CheckpointMismatchError(ValueError):
    """A checkpoint whose keys or shapes do not match the model; the message lists them."""


class CheckpointDownloadError(OSError):
    """A checkpoint URL that could not be downloaded; the message names the URL and the offline remedies."""


class CheckpointReadError(OSError):
    """A checkpoint file that exists but cannot be read: corrupt, truncated, not a torch file, or
    pickling objects outside the ``weights_only`` allow-list."""


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://", "file://"))


def download_timeout() -> float:
    """Seconds a download may wait on the network at once: ``$ANYUP_DENSE_DOWNLOAD_TIMEOUT``
    when set, else ``DEFAULT_DOWNLOAD_TIMEOUT``."""
    value = os.environ.get(DOWNLOAD_TIMEOUT_ENV)
    if value is None:
        return DEFAULT_DOWNLOAD_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = None
    if seconds is None or not seconds > 0:  # also refuses nan
        raise ValueError(f"{DOWNLOAD_TIMEOUT_ENV}={value!r}: expected a positive number of seconds")
    return seconds


def resolve_source(source: Source, releases: Mapping[str, str]) -> str:
    """The URL or path that ``source`` stands for: ``True`` -> the first (default) release's URL,
    a release name -> its URL, an ``os.PathLike`` -> its path (never a release name), another
    string as is."""
    if source is True:
        if not releases:
            raise ValueError("pretrained=True: there is no default release for this model; "
                             "pass a path or URL to a checkpoint")
        return next(iter(releases.values()))
    if isinstance(source, os.PathLike):
        return os.fspath(source)
    if isinstance(source, str):
        return releases.get(source, source)
    names = ", ".join(repr(n) for n in releases) or "none"
    raise ValueError(f"pretrained={source!r}: expected True, a release name (releases: {names}), "
                     f"a URL or a path (str or os.PathLike)")


def load_checkpoint_file(source: Source, releases: Mapping[str, str], progress: bool = True,
                         file_name: Optional[str] = None, safe_globals: Sequence = ()) -> dict:
    """Load the dict stored at ``source`` (see :func:`resolve_source`), on CPU.

    Returns what the file holds: a state_dict or a training checkpoint dict; anything else
    raises ``ValueError``. ``file_name`` overrides the cache file name of a URL (as in
    ``torch.hub.load_state_dict_from_url``). Files are read with ``weights_only=True``;
    ``safe_globals`` extends that allow-list for this call only (entries as for
    ``torch.serialization.safe_globals``: a class, or a ``(stand_in, "module.Name")`` pair
    that rebuilds a class without importing its package). Raises
    :class:`CheckpointDownloadError` / :class:`CheckpointReadError` (both ``OSError``) and
    ``FileNotFoundError`` as described in the module docstring.
    """
    location = resolve_source(source, releases)
    if is_url(location):
        path = hub_cache_path(file_name or url_file_name(location))
        if not os.path.isfile(path):
            download(location, path, progress)
        origin = f"the torch.hub cache file for {location}"
        remedy = (f"It may be a broken download: delete {path} so that the next call downloads it again, "
                  f"or replace it with a good copy. ")
    else:
        path, origin, remedy = location, "checkpoint file", ""
        if not os.path.isfile(path):
            names = ", ".join(repr(n) for n in releases) or "none"
            raise FileNotFoundError(f"pretrained={source!r} is neither a release name (releases: {names}), "
                                    f"a URL, nor an existing file")
    with torch.serialization.safe_globals(list(safe_globals)):
        checkpoint = read_checkpoint(path, origin, remedy)
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{origin} {path} holds a {type(checkpoint).__name__}; expected a state_dict "
                         f"(a dict of tensors) or a checkpoint dict")
    return checkpoint


def read_checkpoint(path: str, origin: str = "checkpoint file", remedy: str = ""):
    """``torch.load(path, map_location="cpu", weights_only=True)``; an unreadable file raises
    :class:`CheckpointReadError` naming it (``origin`` describes it, ``remedy`` is appended)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as error:
        detail = str(error) or type(error).__name__
        kind = foreign_pickle_kind(path)
        if kind is not None:
            raise CheckpointReadError(f"{origin} {path} is {kind}") from error
        raise CheckpointReadError(f"could not read {origin} {path}. {remedy}(torch.load: {detail})") from error


def url_file_name(url: str) -> str:
    """The cache file name torch.hub gives a URL: the last component of its path."""
    return os.path.basename(urlparse(url).path)


def download(url: str, path: str, progress: bool = True) -> None:
    """Download ``url`` to ``path`` via a temporary file renamed on success (torch.hub's
    scheme), waiting at most :func:`download_timeout` seconds on each network operation.

    Any failure raises :class:`CheckpointDownloadError` naming ``url`` and the offline remedies,
    and leaves nothing at ``path``. In offline mode (``HF_HUB_OFFLINE=1``, which
    ``tools/train.py --offline`` sets, or ``ANYUP_DENSE_OFFLINE=1``) it raises at once.
    """
    if any(os.environ.get(name, "").lower() in ("1", "true", "yes", "on") for name in OFFLINE_ENVS):
        raise CheckpointDownloadError(f"could not download {url} (offline mode: {' or '.join(OFFLINE_ENVS)} is set). "
                                      f"To load the weights offline, fetch the file elsewhere and pass its path as "
                                      f"pretrained=, or copy it to {path}")
    timeout = download_timeout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = f"{path}.{uuid.uuid4().hex}.partial"
    if progress:
        sys.stderr.write(f'Downloading: "{url}" to {path}\n')
    file = open(partial, "wb")  # an unwritable cache raises its own OSError, naming the path
    try:
        with file:
            _copy_response(url, file, timeout, progress)
        os.replace(partial, path)
    except (OSError, http.client.HTTPException) as error:
        raise CheckpointDownloadError(f"could not download {url} ({_describe(error, timeout)}). To load the "
                                      f"weights offline, fetch the file elsewhere and pass its path as "
                                      f"pretrained=, or copy it to {path}") from error
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def _copy_response(url: str, file: BinaryIO, timeout: float, progress: bool) -> None:
    """Stream the body at ``url`` into ``file``; a body shorter than its Content-Length raises
    ``http.client.IncompleteRead``."""
    with urlopen(Request(url, headers={"User-Agent": "anyup_dense"}), timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        expected = int(length) if length is not None else None
        received = 0
        with tqdm(total=expected, disable=not progress, unit="B", unit_scale=True, unit_divisor=1024) as bar:
            while chunk := response.read(_CHUNK):
                file.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        if expected is not None and received < expected:
            raise http.client.IncompleteRead(b"", expected - received)


def _describe(error: BaseException, timeout: float) -> str:
    """The cause of a failed download, in words."""
    reason = error.reason if isinstance(error, URLError) and not isinstance(error, HTTPError) else error
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout:g} s; set {DOWNLOAD_TIMEOUT_ENV} to wait longer"
    if isinstance(reason, http.client.IncompleteRead):
        return f"connection closed with {reason.expected} bytes still to come"
    return str(reason) or type(reason).__name__


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


_MMENGINE_KEYS = ("meta", "message_hub", "optimizer", "param_schedulers")
_MMSEG_PREFIXES = ("backbone.", "neck.", "decode_head.", "auxiliary_head.", "data_preprocessor.")
_TIMM_VIT_KEYS = ("patch_embed.proj.weight", "blocks.0.attn.qkv.weight")
_UPSAMPLER_PREFIX = "neck.upsampler."
_EXTRACT_HINT = ("to reuse its (trained) upsampler, save {{k[len('neck.upsampler.'):]: v for k, v in "
                 "{state}.items() if k.startswith('neck.upsampler.')}} with torch.save and pass that file")


def foreign_checkpoint_kind(checkpoint: Mapping) -> Optional[str]:
    """What a loaded checkpoint dict is, in words with a remedy, when it is a recognised kind that
    no single upsampler or backbone loads: an mmengine/mmseg training checkpoint (``state_dict``
    with ``meta``/``message_hub``/``optimizer``), an mmseg model's state_dict (``backbone.*``,
    ``neck.*``, ``decode_head.*`` keys), a timm ViT backbone's state_dict, or a Detectron2
    checkpoint (``model`` + ``iteration``/``trainer``). ``None`` for anything else."""
    keys = set(checkpoint)
    if "state_dict" in keys and keys & set(_MMENGINE_KEYS):
        inner = checkpoint["state_dict"]
        has_upsampler = isinstance(inner, Mapping) and any(str(k).startswith(_UPSAMPLER_PREFIX) for k in inner)
        hint = _EXTRACT_HINT.format(state="checkpoint['state_dict']") if has_upsampler else (
            "pass the released weights of the upsampler or backbone instead")
        return (f"an mmengine/mmseg training checkpoint (keys {sorted(keys)}): give it to mmseg as load_from= or "
                f"tools/test.py's CHECKPOINT, not as pretrained=; {hint}")
    if keys and all(isinstance(k, str) and k.startswith(_MMSEG_PREFIXES) for k in keys):
        hint = _EXTRACT_HINT.format(state="state_dict") if any(k.startswith(_UPSAMPLER_PREFIX) for k in keys) else (
            "pass the released weights of the upsampler or backbone instead")
        return f"the state_dict of a whole mmseg model (backbone.*, neck.*, decode_head.* keys); {hint}"
    if all(k in keys for k in _TIMM_VIT_KEYS):
        return ("a timm ViT backbone's state_dict (patch_embed.*, blocks.* keys): give it to the backbone "
                "(TimmViT(pretrained=PATH)), not to an upsampler")
    if "model" in keys and keys & {"iteration", "trainer"}:
        return ("a Detectron2 checkpoint (keys 'model', 'iteration'/'trainer'): give it to Detectron2 as "
                "MODEL.WEIGHTS / train.init_checkpoint, not as pretrained=")
    return None


def foreign_pickle_kind(path: str) -> Optional[str]:
    """:func:`foreign_checkpoint_kind` of a torch file that ``weights_only`` loading refuses, read
    from the names its pickle mentions without unpickling anything: mmengine training
    checkpoints pickle mmengine's ``HistoryBuffer`` in ``message_hub``. ``None`` otherwise."""
    names = _pickle_names(path)
    if "message_hub" in names and "state_dict" in names or any(n.startswith("mmengine.") for n in names):
        hint = (_EXTRACT_HINT.format(state="checkpoint['state_dict']")
                if any(n.startswith(_UPSAMPLER_PREFIX) for n in names) else
                "pass the released weights of the upsampler or backbone instead")
        return (f"an mmengine/mmseg training checkpoint (it pickles mmengine objects): give it to mmseg as "
                f"load_from= or tools/test.py's CHECKPOINT, not as pretrained=; {hint}")
    return None


def _pickle_names(path: str) -> set:
    """Every string and global name in the pickle of a torch zip file (read with ``pickletools``,
    nothing is executed); empty when the file is not one."""
    try:
        with zipfile.ZipFile(path) as archive:
            data = next((n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
            payload = archive.read(data) if data is not None else b""
        names = set()
        for opcode, arg, _ in pickletools.genops(payload):
            if opcode.name == "GLOBAL":
                names.add(str(arg).replace(" ", "."))
            elif isinstance(arg, str):
                names.add(arg)
        return names
    except (OSError, zipfile.BadZipFile, ValueError):
        return set()


def _sample_keys(model: nn.Module, count: int = 3) -> str:
    keys = list(model.state_dict())[:count]
    return ", ".join(repr(k) for k in keys) + (", ..." if len(model.state_dict()) > count else "") if keys else "none"


def hub_cache_path(filename: str) -> str:
    """Where torch.hub caches a downloaded checkpoint file of this name."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", filename)


def cached_release(name: str, releases: Mapping[str, str]) -> Optional[str]:
    """Path of a release already in torch.hub's cache, or ``None`` (never downloads)."""
    path = hub_cache_path(url_file_name(releases[name]))
    return path if os.path.isfile(path) else None
