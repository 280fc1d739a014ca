"""Evaluate a checkpoint with an anyup_dense mmseg config (mmseg's ``tools/test.py`` CLI).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--tta] [--cfg-options k=v ...]
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
    parser = argparse.ArgumentParser(description="Test (and evaluate) a model")
    parser.add_argument("config", help="test config file path")
    parser.add_argument("checkpoint", help="checkpoint file")
    parser.add_argument("--work-dir", help="the dir to save the evaluation metrics")
    parser.add_argument("--out", help="dump the predictions to this directory (mmseg's format)")
    parser.add_argument("--tta", action="store_true", help="test-time augmentation (needs cfg.tta_pipeline)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, help="override settings in the config")
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
    cfg.load_from = args.checkpoint
    allow_full_checkpoint_loading()
    if args.tta:
        if "tta_pipeline" not in cfg:
            raise SystemExit("--tta needs a tta_pipeline in the config")
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model
    if args.out is not None:
        cfg.test_evaluator["output_dir"] = args.out
        cfg.test_evaluator["keep_results"] = True
    Runner.from_cfg(cfg).test()


if __name__ == "__main__":
    main()
