"""Reading a local checkpoint file, torch or safetensors, on CPU; unreadable files are named."""
import pickle
from typing import Dict

import torch

from anyup_dense.checkpoints.kinds import foreign_pickle_kind

_SAFETENSORS_HEADER_LIMIT = 100_000_000


class CheckpointReadError(OSError):
    """A checkpoint file that exists but cannot be read: corrupt, truncated, not a torch file, or
    pickling objects outside the ``weights_only`` allow-list."""


def is_safetensors(path: str) -> bool:
    """A safetensors file starts with the little-endian length of its JSON header, then ``{``."""
    with open(path, "rb") as file:
        head = file.read(9)
    return len(head) == 9 and int.from_bytes(head[:8], "little") < _SAFETENSORS_HEADER_LIMIT and head[8:] == b"{"


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


def read_safetensors(path: str, origin: str = "checkpoint file", remedy: str = "") -> Dict[str, torch.Tensor]:
    """The flat state_dict of a safetensors file (needs the ``safetensors`` package); an
    unreadable file raises :class:`CheckpointReadError` naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except SafetensorError as error:
        raise CheckpointReadError(f"could not read {origin} {path}. {remedy}(safetensors: {error})") from error
