"""Training and evaluation entry points for both config systems.

* yacs: :class:`Trainer`, a ``DefaultTrainer`` with our optimizer (layer-wise lr decay,
  SGD/AdamW) and ``COCOEvaluator(use_fast_impl=False)`` (the stub ``_C`` has no fast COCO
  evaluation).
* LazyConfig: :func:`lazy_train` / :func:`lazy_test` for configs with the usual
  ``model``, ``dataloader``, ``optimizer``, ``lr_multiplier`` and ``train`` entries.
"""
import logging
import os
from typing import Dict, Tuple

import torch.nn as nn
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import instantiate
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, create_ddp_model, default_writers, hooks
from detectron2.evaluation import COCOEvaluator, inference_on_dataset, print_csv_format
from detectron2.utils import comm

from anyup_dense.integrations.detectron2.lr_decay import build_optimizer

logger = logging.getLogger(__name__)


class Trainer(DefaultTrainer):
    """``DefaultTrainer`` with :func:`build_optimizer` and the pycocotools COCO evaluator;
    :meth:`train` returns the results of the evaluation that ends training."""

    def train(self) -> Dict:
        super().train()
        return getattr(self, "_last_eval_results", {})  # set by DefaultTrainer's EvalHook

    @classmethod
    def build_evaluator(cls, cfg, dataset_name: str, output_folder: str = None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference")
        return COCOEvaluator(dataset_name, output_dir=output_folder, use_fast_impl=False)

    @classmethod
    def build_optimizer(cls, cfg, model: nn.Module):
        return build_optimizer(cfg, model)


def lazy_test(cfg, model: nn.Module) -> Dict:
    """Run ``cfg.dataloader.evaluator`` over ``cfg.dataloader.test``; returns its results."""
    if "evaluator" not in cfg.dataloader:
        return {}
    results = inference_on_dataset(model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator))
    if comm.is_main_process():
        print_csv_format(results)
    return results


def lazy_train(cfg, resume: bool = False) -> Tuple[nn.Module, Dict]:
    """Train the LazyConfig ``cfg`` for ``cfg.train.max_iter`` iterations, evaluating every
    ``cfg.train.eval_period`` iterations and at the end; returns the model and the last results."""
    model = instantiate(cfg.model).to(cfg.train.device)
    logger.info("Model:\n%s", model)
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    model = create_ddp_model(model, **cfg.train.ddp)
    trainer_cls = AMPTrainer if cfg.train.amp.enabled else SimpleTrainer
    trainer = trainer_cls(model, instantiate(cfg.dataloader.train), optimizer)
    checkpointer = DetectionCheckpointer(model, cfg.train.output_dir, trainer=trainer)
    main = comm.is_main_process()
    last_results: Dict = {}

    def evaluate() -> Dict:
        last_results.clear()
        last_results.update(lazy_test(cfg, model))
        return last_results

    trainer.register_hooks([
        hooks.IterationTimer(),
        hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
        hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if main else None,
        hooks.EvalHook(cfg.train.eval_period, evaluate),
        hooks.PeriodicWriter(default_writers(cfg.train.output_dir, cfg.train.max_iter),
                             period=cfg.train.log_period) if main else None,
    ])
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=resume)
    start_iter = trainer.iter + 1 if resume and checkpointer.has_checkpoint() else 0
    trainer.train(start_iter, cfg.train.max_iter)
    return model, last_results

