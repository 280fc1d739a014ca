"""Train an mmseg model from an anyup_dense config (mmseg's ``tools/train.py`` CLI).

    python tools/train.py configs/mmseg/linear_probe/anyup_vit-s14-dinov2_linear-probe_ade20k-151_448x448.py
    bash tools/dist_train.sh CONFIG 8 [--work-dir DIR] [--cfg-options k=v ...]
"""
import argparse
import os
import os.path as osp

from anyup_dense.integrations import mmcv_lite_compat

mmcv_lite_compat.apply()  # before anything imports mmseg

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.runner import Runner  # noqa: E402


def allow_full_checkpoint_loading() -> None:
    """mmengine checkpoints pickle the training state (message hub, numpy values), which
    torch >= 2.6 refuses by default; load the checkpoint the user names in full, as mmseg's
    tools did before. Calls that pass ``weights_only=True`` (our weight loaders) are unaffected.
    Only use checkpoints you trust."""
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train a segmentor / depth / normal model")
    parser.add_argument("config", help="train config file path")
    parser.add_argument("--work-dir", help="the dir to save logs and models")
    parser.add_argument("--resume", action="store_true", default=False,
                        help="resume from the latest checkpoint in the work_dir automatically")
    parser.add_argument("--amp", action="store_true", default=False, help="enable automatic-mixed-precision training")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction,
                        help="override settings in the config, e.g. model.neck.frozen=False")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none", help="job launcher")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0)
    args = parser.parse_args()
    if "LOCAL_RANK" not in os.environ:
        os.environ["LOCAL_RANK"] = str(args.local_rank)
    return args


def main() -> None:
    args = parse_args()
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get("work_dir", None) is None:
        cfg.work_dir = osp.join("./work_dirs", osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.loss_scale = "dynamic"
    cfg.resume = args.resume
    if args.resume or cfg.get("load_from"):
        allow_full_checkpoint_loading()
    Runner.from_cfg(cfg).train()


if __name__ == "__main__":
    main()
