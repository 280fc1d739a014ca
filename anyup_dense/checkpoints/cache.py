"""Downloads into torch.hub's checkpoint cache, which never hang and never leave a truncated file.

URLs are downloaded once into ``$TORCH_HOME/hub/checkpoints`` with torch.hub's progress bar
and reused afterwards. A download goes to a temporary ``.partial`` file that is renamed only
when complete. Every network wait (connect, each read) gives up after :func:`download_timeout`
seconds: ``DEFAULT_DOWNLOAD_TIMEOUT`` (60 s), or the value of the environment variable
``ANYUP_DENSE_DOWNLOAD_TIMEOUT``. Every failure (timeout, refused or dropped connection, HTTP
error, truncated body) raises :class:`CheckpointDownloadError`, which names the URL and the two
offline remedies: pass a local path, or copy the file to its exact cache path.
"""
import http.client
import os
import sys
import uuid
from typing import BinaryIO
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

import torch
from torch.hub import tqdm  # tqdm when installed, else torch.hub's silent stand-in

DEFAULT_DOWNLOAD_TIMEOUT = 60.0
DOWNLOAD_TIMEOUT_ENV = "ANYUP_DENSE_DOWNLOAD_TIMEOUT"
OFFLINE_ENVS = ("ANYUP_DENSE_OFFLINE", "HF_HUB_OFFLINE")
_CHUNK = 1 << 16


class CheckpointDownloadError(OSError):
    """A checkpoint URL that could not be downloaded; the message names the URL and the offline remedies."""


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://", "file://"))


def hub_cache_path(filename: str) -> str:
    """Where torch.hub caches a downloaded checkpoint file of this name."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", filename)


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
