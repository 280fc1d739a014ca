"""Checkpoint files: the upsampler's weights and, beside them, the training state.

For step N, ``out_dir`` holds

* ``step_000000N.pth``: exactly what the upsampler's builder loads, e.g. a plain AnyUp
  state_dict for ``build_upsampler("anyup", pretrained=path)``;
* ``step_000000N.state.pth``: a dict with ``format``, ``recipe``, ``step``, ``config`` (every
  hyper-parameter), ``optimizer`` (its state_dict), ``helpers`` (trainable modules outside
  the upsampler: downsampler, scale network, ...) and ``world_size``.

No generator states are stored: every random draw of step s is a function of
(seed, rank, s) (:mod:`anyup_dense.training.rng`). Both files are written to a temporary
name and renamed, the state file first, so a model file with a state file beside it is
always complete.
"""
import os
import re
from typing import Any, Dict, Optional

import torch

STATE_FORMAT = "anyup_dense.training/1"
MODEL_NAME = re.compile(r"^step_(\d+)\.pth$")


def model_path(out_dir: str, step: int) -> str:
    return os.path.join(out_dir, f"step_{step:07d}.pth")


def state_path(model_file: str) -> str:
    """``.../step_N.pth`` -> ``.../step_N.state.pth``."""
    root, ext = os.path.splitext(model_file)
    return f"{root}.state{ext}"


def _atomic_save(obj: Any, path: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_checkpoint(out_dir: str, step: int, upsampler_object: Any, train_state: Dict[str, Any]) -> str:
    """Write both files for ``step``; returns the model file's path."""
    os.makedirs(out_dir, exist_ok=True)
    path = model_path(out_dir, step)
    _atomic_save({"format": STATE_FORMAT, "step": step, **train_state}, state_path(path))
    _atomic_save(upsampler_object, path)
    return path


def latest_checkpoint(out_dir: str) -> Optional[str]:
    """The model file of the highest complete step in ``out_dir``, or ``None``."""
    if not os.path.isdir(out_dir):
        return None
    steps = sorted(int(m.group(1)) for m in map(MODEL_NAME.match, os.listdir(out_dir)) if m)
    for step in reversed(steps):
        path = model_path(out_dir, step)
        if os.path.isfile(state_path(path)):
            return path
    return None


def load_checkpoint(path: str):
    """(upsampler object, training-state dict) of the model file ``path``."""
    side = state_path(path)
    if not os.path.isfile(side):
        raise FileNotFoundError(f"{path!r} has no training-state file {side!r}; it cannot be resumed "
                                f"(it still loads as upsampler weights)")
    state = torch.load(side, map_location="cpu", weights_only=True)
    if state.get("format") != STATE_FORMAT:
        raise ValueError(f"{side!r} is not an anyup_dense training state (format {state.get('format')!r})")
    return torch.load(path, map_location="cpu", weights_only=True), state
