"""Evaluate a checkpoint with an anyup_dense mmseg config (mmseg's ``tools/test.py`` CLI).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out DIR] [--show-dir DIR] [--tta]
                         [--cfg-options k=v ...]

Nothing is downloaded for weights the checkpoint holds: the backbone's and neck's
``pretrained=`` entries are set to ``None`` before the model is built (each change is
logged), and the Runner loads those weights from CHECKPOINT.

``--out DIR``: each prediction as a PNG in the dataset's encoding: class ids (segmentation),
depth in the annotations' units (the inverse of ``LoadDepthAnnotation``'s
``depth_rescale_factor``, e.g. millimetres for NYU), RGB ``(n + 1) * 127.5`` (normals).
``--show-dir DIR``: drawings of ground truth and prediction (``ProbeVisualizationHook`` /
``ProbeVisualizer``, any probe kind) under ``DIR/vis_data/vis_image``.
"""
import argparse
import inspect
import os.path as osp
from typing import Optional

from mmseg.evaluation.metrics import DepthMetric
from mmseg.registry import METRICS

from anyup_dense.integrations.mmseg.cli import (TrustedCheckpointRunner, add_common_arguments, load_config, parse,
                                                use_checkpoint_weights)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Test (and evaluate) a model")
    parser.add_argument("config", help="test config file path")
    parser.add_argument("checkpoint", help="checkpoint file")
    parser.add_argument("--out", help="dump the predictions to this directory (mmseg's format)")
    parser.add_argument("--show-dir", help="save drawings of ground truth and prediction to this directory")
    parser.add_argument("--tta", action="store_true", help="test-time augmentation (needs cfg.tta_pipeline)")
    return parse(add_common_arguments(parser), argv)


def main(argv=None) -> dict:
    """Evaluate; returns the metrics."""
    args = parse_args(argv)
    cfg = load_config(args)
    cfg.load_from = args.checkpoint
    use_checkpoint_weights(cfg, args.checkpoint)
    if args.tta:
        if "tta_pipeline" not in cfg:
            raise SystemExit("--tta needs a tta_pipeline in the config")
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model
    if args.out is not None:
        write_predictions(cfg, args.out)
    if args.show_dir is not None:
        show_predictions(cfg, args.show_dir)
    return TrustedCheckpointRunner.from_cfg(cfg).test()


def write_predictions(cfg, out: str) -> None:
    """The test evaluator writes each prediction to ``out`` (mmseg's ``--out``), depth in the
    units of the annotations unless the config sets ``depth_scale_factor``."""
    evaluator = cfg.test_evaluator
    evaluator["output_dir"] = out
    metric = METRICS.get(evaluator["type"])
    if "keep_results" in inspect.signature(metric).parameters:  # e.g. CityscapesMetric: keep the written files
        evaluator["keep_results"] = True
    rescale = depth_rescale_factor(cfg.test_dataloader.dataset.pipeline)
    if issubclass(metric, DepthMetric) and rescale is not None:
        evaluator.setdefault("depth_scale_factor", 1.0 / rescale)


def depth_rescale_factor(pipeline) -> Optional[float]:
    """``depth_rescale_factor`` of the pipeline's ``LoadDepthAnnotation`` (file units -> metres)."""
    for transform in pipeline:
        if transform["type"] == "LoadDepthAnnotation":
            return transform.get("depth_rescale_factor", 1.0)
    return None


def show_predictions(cfg, show_dir: str) -> None:
    """Draw every test sample into ``show_dir`` (mmseg's ``--show-dir``) with the probe-aware
    hook and visualizer (``anyup_dense.integrations.mmseg.visualization``)."""
    hook = cfg.default_hooks.get("visualization") or {}
    cfg.default_hooks["visualization"] = dict(hook, type="ProbeVisualizationHook", draw=True, interval=1)
    # named after the directory: mmengine reuses a visualizer instance of the same name in the process
    cfg.visualizer.update(type="ProbeVisualizer", save_dir=show_dir, name=f"visualizer:{osp.abspath(show_dir)}")


if __name__ == "__main__":
    main()
