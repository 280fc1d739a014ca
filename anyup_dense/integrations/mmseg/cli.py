"""Pieces shared by ``tools/train.py`` and ``tools/test.py`` (mmseg's command-line conventions)."""
import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction


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


def allow_full_checkpoint_loading() -> None:
    """mmengine checkpoints pickle the training state (message hub, numpy values), which
    torch >= 2.6 refuses by default; load the checkpoint the user names in full, as mmseg's
    tools did before. Calls that pass ``weights_only=True`` (our weight loaders) are unaffected.
    Only use checkpoints you trust."""
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
