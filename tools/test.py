"""Evaluate a checkpoint with an anyup_dense mmseg config (mmseg's ``tools/test.py`` CLI).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--tta] [--cfg-options k=v ...]
"""
import argparse

from anyup_dense.integrations.mmseg.cli import TrustedCheckpointRunner, add_common_arguments, load_config, parse


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Test (and evaluate) a model")
    parser.add_argument("config", help="test config file path")
    parser.add_argument("checkpoint", help="checkpoint file")
    parser.add_argument("--out", help="dump the predictions to this directory (mmseg's format)")
    parser.add_argument("--tta", action="store_true", help="test-time augmentation (needs cfg.tta_pipeline)")
    return parse(add_common_arguments(parser), argv)


def main(argv=None) -> dict:
    """Evaluate; returns the metrics."""
    args = parse_args(argv)
    cfg = load_config(args)
    cfg.load_from = args.checkpoint
    if args.tta:
        if "tta_pipeline" not in cfg:
            raise SystemExit("--tta needs a tta_pipeline in the config")
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model
    if args.out is not None:
        cfg.test_evaluator["output_dir"] = args.out
        cfg.test_evaluator["keep_results"] = True
    return TrustedCheckpointRunner.from_cfg(cfg).test()


if __name__ == "__main__":
    main()
