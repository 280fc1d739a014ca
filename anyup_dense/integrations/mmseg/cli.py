"""Pieces shared by ``tools/train.py`` and ``tools/test.py`` (mmseg's command-line conventions)."""
import argparse
import contextlib
import os
import os.path as osp
import pickle
from typing import List

import numpy as np
import torch
from mmengine.config import Config, DictAction
from mmengine.logging import HistoryBuffer, print_log
from mmengine.runner import Runner


def add_common_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--work-dir``, ``--cfg-options``, ``--launcher`` and ``--local-rank``, as in mmseg."""
    parser.add_argument("--work-dir", help="the dir to save logs, models and metrics")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction,
                        help="override settings in the config, e.g. model.neck.frozen=False")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none", help="job launcher")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0)
    return parser


def parse(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    return args


def load_config(args: argparse.Namespace) -> Config:
    """The config with the launcher, ``--cfg-options`` and the work dir applied (default
    ``./work_dirs/<config name>``)."""
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get("work_dir", None) is None:
        cfg.work_dir = osp.join("./work_dirs", osp.splitext(osp.basename(args.config))[0])
    return cfg


def _history_buffer_statistic(owner: type, name: str):
    """Stand-in for ``getattr`` while unpickling: mmengine pickles a ``HistoryBuffer``'s
    statistics methods as ``getattr(HistoryBuffer, "min")``; only those four are handed out."""
    if owner is HistoryBuffer and name in ("min", "max", "current", "mean"):
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(f"refusing getattr({owner!r}, {name!r}): only HistoryBuffer's min/max/current/mean "
                                 f"are allowed")


def _numpy_globals() -> list:
    """numpy arrays, scalars and numeric dtypes, under numpy 2's (``numpy._core``) and numpy 1's
    (``numpy.core``) pickle names."""
    multiarray = np._core.multiarray
    reconstructors = [(getattr(multiarray, name), f"numpy.{core}.multiarray.{name}")
                      for name in ("_reconstruct", "scalar") for core in ("_core", "core")]
    numeric = (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
               np.float16, np.float32, np.float64)
    return reconstructors + [np.ndarray, np.dtype] + [type(np.dtype(t)) for t in numeric]


def trusted_checkpoint_globals() -> list:
    """What an mmengine training checkpoint pickles beyond ``weights_only``'s defaults (tensors,
    containers, ``OrderedDict``): numpy arrays / scalars / numeric dtypes and mmengine's
    ``HistoryBuffer`` (with a ``getattr`` that returns only its statistics methods)."""
    return _numpy_globals() + [HistoryBuffer, (_history_buffer_statistic, "builtins.getattr")]


class UntrustedCheckpointError(pickle.UnpicklingError):
    """A checkpoint that pickles objects outside :func:`trusted_checkpoint_globals`."""


@contextlib.contextmanager
def trusted_checkpoint_loading(filename: str):
    """``torch.load``'s ``weights_only`` loading with :func:`trusted_checkpoint_globals` allowed,
    for this block only; a refusal raises :class:`UntrustedCheckpointError` naming ``filename``."""
    with torch.serialization.safe_globals(trusted_checkpoint_globals()):
        try:
            yield
        except pickle.UnpicklingError as error:
            raise UntrustedCheckpointError(
                f"refusing to load the checkpoint {filename}: it holds more than an mmengine checkpoint does "
                f"(tensors, containers, numpy arrays/scalars/dtypes, mmengine's HistoryBuffer), or is corrupt; "
                f"unpickling other objects could run arbitrary code. Only if you trust the file, load it yourself "
                f"with torch.load(..., weights_only=False) and save its 'state_dict' alone. torch.load: {error}"
            ) from error


class TrustedCheckpointRunner(Runner):
    """mmengine's ``Runner``, loading ``load_from`` / resume checkpoints within
    :func:`trusted_checkpoint_loading` (mmengine calls ``torch.load`` without ``weights_only``,
    which torch >= 2.6 treats as ``weights_only=True``, refusing mmengine's own numpy and
    ``HistoryBuffer`` entries; older torch loads everything)."""

    def load_checkpoint(self, filename: str, *args, **kwargs):
        with trusted_checkpoint_loading(filename):
            return super().load_checkpoint(filename, *args, **kwargs)

    def resume(self, filename: str, *args, **kwargs):
        with trusted_checkpoint_loading(filename):
            return super().resume(filename, *args, **kwargs)


# model parts whose pretrained= is loaded when they are built, and the state_dict prefix of those weights
WEIGHTED_PARTS = {"backbone": "backbone.", "neck": "neck.upsampler."}


def checkpoint_state_keys(filename: str) -> set:
    """The state_dict keys of an mmengine checkpoint (or a bare state_dict), read memory-mapped
    with :func:`trusted_checkpoint_loading`: no tensor data is read."""
    with trusted_checkpoint_loading(filename):
        checkpoint = torch.load(filename, map_location="cpu", weights_only=True, mmap=True)
    return set(checkpoint.get("state_dict", checkpoint))


def pretrained_entries(model_cfg) -> List[tuple]:
    """``(config key, dict holding it, state_dict prefix of its weights)`` for each set
    ``pretrained=`` of the backbone, the neck and a neck's ``upsampler=dict(...)``."""
    entries = []
    for part, prefix in WEIGHTED_PARTS.items():
        node = model_cfg.get(part)
        if not isinstance(node, dict):
            continue
        for key, holder in ((f"model.{part}", node), (f"model.{part}.upsampler", node.get("upsampler"))):
            if isinstance(holder, dict) and holder.get("pretrained") not in (None, False):
                entries.append((f"{key}.pretrained", holder, prefix))
    return entries


def use_checkpoint_weights(cfg: Config, filename: str) -> List[str]:
    """Set ``pretrained=None`` for each model part whose weights ``filename`` holds (its
    ``backbone.*`` / ``neck.upsampler.*`` keys), so that building the model downloads nothing:
    the Runner then loads them from the checkpoint. Parts the checkpoint lacks (a lean
    checkpoint's, ``LeanCheckpointHook``) keep their ``pretrained=``. Returns (and logs) one
    line per change."""
    entries = pretrained_entries(cfg.model)
    if not entries or not osp.isfile(filename):  # e.g. a URL: mmengine fetches it, keys unknown beforehand
        return []
    keys = checkpoint_state_keys(filename)
    changes = []
    for key, holder, prefix in entries:
        if any(k.startswith(prefix) for k in keys):
            changes.append(f"{key}={holder['pretrained']!r} -> None: the {prefix}* weights are loaded from "
                           f"{filename}")
            holder["pretrained"] = None
    for line in changes:
        print_log(line, logger="current")
    return changes
