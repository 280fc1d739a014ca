#!/usr/bin/env python
"""Train or evaluate a Detectron2 model with an upsampled-ViT backbone.

Detectron2's usual command line (``default_argument_parser``) and ``launch``:

    python tools/train_net.py --config-file configs/detectron2/COCO-InstanceSegmentation/mask_rcnn_vit_s14_anyup_2x.yaml \
        --num-gpus 8 [--num-machines N --machine-rank R --dist-url tcp://HOST:PORT] [KEY VALUE ...]
    python tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS model_final.pth

``.yaml`` configs use the yacs path (``add_anyup_config`` + our ``Trainer``); ``.py`` configs
the LazyConfig path (trailing ``key=value`` overrides; ``null`` or ``None`` for None).
``--eval-only`` does not fetch the ViT's or upsampler's pre-trained weights when the
checkpoint it evaluates holds them, so it runs offline. Evaluation is
``COCOEvaluator(use_fast_impl=False)``: AP, AP50, AP75, APs, APm, APl per task.
``--register-coco NAME JSON IMAGE_ROOT`` (repeatable) registers extra COCO-format datasets.
"""
from anyup_dense.integrations.detectron2 import add_anyup_config  # first: applies the detectron2 compat shim
from anyup_dense.integrations.detectron2.trainer import (Trainer, build_eval_model, lazy_eval_model, lazy_test,
                                                         lazy_train)

from detectron2.config import LazyConfig, get_cfg  # noqa: E402
from detectron2.data.datasets import register_coco_instances  # noqa: E402
from detectron2.engine import default_argument_parser, default_setup, launch  # noqa: E402


def setup_yacs(args):
    cfg = add_anyup_config(get_cfg())
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    default_setup(cfg, args)
    return cfg


def setup_lazy(args):
    cfg = LazyConfig.apply_overrides(LazyConfig.load(args.config_file), args.opts)
    default_setup(cfg, args)
    return cfg


def main(args):
    """Returns the evaluation results (a dict of task -> metric -> value)."""
    for name, json_file, image_root in args.register_coco or []:
        register_coco_instances(name, {}, json_file, image_root)
    if args.config_file.endswith(".py"):
        cfg = setup_lazy(args)
        if args.eval_only:
            return lazy_test(cfg, lazy_eval_model(cfg))
        return lazy_train(cfg, resume=args.resume)[1]
    cfg = setup_yacs(args)
    if args.eval_only:
        return Trainer.test(cfg, build_eval_model(cfg, resume=args.resume))
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def argument_parser():
    parser = default_argument_parser()
    parser.add_argument("--register-coco", nargs=3, action="append", metavar=("NAME", "JSON", "IMAGE_ROOT"),
                        help="register a COCO-format dataset under NAME before building the config")
    return parser


if __name__ == "__main__":
    args = argument_parser().parse_args()
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))
