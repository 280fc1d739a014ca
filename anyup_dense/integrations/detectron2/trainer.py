"""Training and evaluation entry points for both config systems.

* yacs: :class:`Trainer`, a ``DefaultTrainer`` with our optimizer (layer-wise lr decay,
  SGD/AdamW) and ``COCOEvaluator(use_fast_impl=False)`` (the stub ``_C`` has no fast COCO
  evaluation).
* LazyConfig: :func:`lazy_train` / :func:`lazy_test` for configs with the usual
  ``model``, ``dataloader``, ``optimizer``, ``lr_multiplier`` and ``train`` entries.
* Evaluation of saved weights: :func:`build_eval_model` (yacs) / :func:`lazy_eval_model`.
  The backbone parts with pre-trained weights of their own (:data:`PRETRAINED_PARTS`) are
  built without fetching those weights when the checkpoint holds the part: no download for
  ``--eval-only`` on a full checkpoint.
"""
import logging
import os
from typing import Dict, List, Set, Tuple

import torch.nn as nn
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import instantiate
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, create_ddp_model, default_writers, hooks
from detectron2.evaluation import COCOEvaluator, inference_on_dataset, print_csv_format
from detectron2.utils import comm

from anyup_dense.integrations.detectron2.lazy import null_to_none
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


# Backbone children -> the yacs node with their PRETRAINED key.
PRETRAINED_PARTS = {"vit": "VIT", "upsampler": "UPSAMPLER"}


def checkpoint_keys(path: str) -> Set[str]:
    """The model keys of the Detectron2 checkpoint at ``path`` (a file, URL or ``detectron2://``)."""
    checkpointer = DetectionCheckpointer(nn.Module())
    local = path if os.path.isfile(path) else checkpointer.path_manager.get_local_path(path)
    return set(checkpointer._load_file(local)["model"])  # the file reader DetectionCheckpointer.load uses


def held_parts(keys: Set[str]) -> List[str]:
    """The :data:`PRETRAINED_PARTS` that have weights among the checkpoint ``keys``."""
    return [part for part in PRETRAINED_PARTS if any(k.startswith(f"backbone.{part}.") for k in keys)]


def _check_parts_complete(model: nn.Module, keys: Set[str], parts: List[str], path: str) -> None:
    """The checkpoint must hold every weight of the parts built without their pre-trained weights."""
    for part in parts:
        missing = sorted(k for k in model.state_dict() if k.startswith(f"backbone.{part}.") and k not in keys)
        if missing:
            raise ValueError(f"checkpoint {path} holds backbone.{part} weights but lacks {len(missing)} of them "
                             f"(e.g. {missing[0]}): it is not a checkpoint of this model")


def build_eval_model(cfg, resume: bool = False) -> nn.Module:
    """``Trainer.build_model(cfg)`` with the weights of ``MODEL.WEIGHTS`` (with ``resume``: the
    last checkpoint in ``OUTPUT_DIR`` if there is one) loaded; ``MODEL.VIT.PRETRAINED`` /
    ``MODEL.UPSAMPLER.PRETRAINED`` are ignored for the parts that file holds."""
    checkpointer = DetectionCheckpointer(nn.Module(), save_dir=cfg.OUTPUT_DIR)
    path = checkpointer.get_checkpoint_file() if resume and checkpointer.has_checkpoint() else cfg.MODEL.WEIGHTS
    keys = checkpoint_keys(path) if path else set()
    parts = held_parts(keys)
    cfg = cfg.clone()
    cfg.defrost()
    for part in parts:
        cfg.MODEL[PRETRAINED_PARTS[part]].PRETRAINED = ""
    cfg.freeze()
    model = Trainer.build_model(cfg)
    _check_parts_complete(model, keys, parts, path)
    DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).load(path)
    return model


def lazy_eval_model(cfg) -> nn.Module:
    """``cfg.model`` with the weights of ``cfg.train.init_checkpoint`` loaded; the backbone's
    ``vit.pretrained`` / ``upsampler.pretrained`` are ignored for the parts that file holds
    (``cfg`` is changed accordingly)."""
    path = cfg.train.init_checkpoint
    keys = checkpoint_keys(path) if path else set()
    parts = [part for part in held_parts(keys) if null_to_none(cfg.model.backbone.get(part)) is not None]
    for part in parts:
        cfg.model.backbone[part].pretrained = None
    model = instantiate(cfg.model).to(cfg.train.device)
    _check_parts_complete(model, keys, parts, path)
    model = create_ddp_model(model)
    DetectionCheckpointer(model).load(path)
    return model


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

