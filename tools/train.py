"""Train an mmseg model from an anyup_dense config (mmseg's ``tools/train.py`` CLI).

    python tools/train.py configs/mmseg/linear_probe/anyup_vit-s14-dinov2_linear-probe_ade20k-151_448x448.py
    bash tools/dist_train.sh CONFIG 8 [--work-dir DIR] [--cfg-options k=v ...]
"""
import argparse

from anyup_dense.integrations.mmseg.cli import TrustedCheckpointRunner, add_common_arguments, load_config, parse
from mmengine.runner import Runner


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train a segmentor / depth / normal model")
    parser.add_argument("config", help="train config file path")
    parser.add_argument("--resume", action="store_true", default=False,
                        help="resume from the latest checkpoint in the work_dir automatically")
    parser.add_argument("--amp", action="store_true", default=False, help="enable automatic-mixed-precision training")
    return parse(add_common_arguments(parser), argv)


def main(argv=None) -> Runner:
    """Train; returns the Runner (its model is the trained one)."""
    args = parse_args(argv)
    cfg = load_config(args)
    if args.amp:
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.loss_scale = "dynamic"
    cfg.resume = args.resume
    runner = TrustedCheckpointRunner.from_cfg(cfg)
    runner.train()
    return runner


if __name__ == "__main__":
    main()
