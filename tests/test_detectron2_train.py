"""Real Detectron2 training runs on the synthetic COCO set, then COCOEvaluator (pycocotools)."""
import math

import pytest
import torch

from detectron2_helpers import CONFIG_DIR, TINY_VIT, d2, load_tool, synthetic_coco, tiny_yacs_cfg  # noqa: F401

MASK_RCNN = CONFIG_DIR / "COCO-InstanceSegmentation"
COCO_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def assert_coco_results(results, tasks):
    for task in tasks:
        assert set(COCO_KEYS) <= set(results[task]), results.get(task)
        for key in COCO_KEYS:  # NaN would mean "no predictions" or no object of that size
            value = results[task][key]
            assert math.isfinite(value) or key in ("APm", "APl"), (task, key, value)
            assert math.isnan(value) or 0.0 <= value <= 100.0
        assert results[task]["AP50"] >= 0.0


@pytest.mark.parametrize("upsampler", ["bilinear", "anyup"])
def test_yacs_mask_rcnn_trains_and_evaluates_via_train_net(upsampler, synthetic_coco, tmp_path):
    """tools/train_net.py end to end: a variant yaml from configs/ plus a tiny-model yaml on top."""
    extra = "\n      qk_dim: 16" if upsampler == "anyup" else " {}"
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text(f"""_BASE_: "{MASK_RCNN / f'mask_rcnn_vit_s14_{upsampler}_2x.yaml'}"
MODEL:
  VIT:
    PRETRAINED: ""
    KWARGS: {{img_size: {TINY_VIT['img_size']}, depth: {TINY_VIT['depth']}, embed_dim: {TINY_VIT['embed_dim']}, num_heads: {TINY_VIT['num_heads']}}}
  UPSAMPLER:
    PRETRAINED: ""
    KWARGS:{extra}
""")
    train_net = load_tool("train_net")
    opts = ["MODEL.DEVICE", "cpu", "MODEL.SFP.OUT_CHANNELS", "32",
            "MODEL.ANCHOR_GENERATOR.SIZES", "[[8], [16], [32], [64], [128]]",
            "MODEL.ROI_HEADS.NUM_CLASSES", "2", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32",
            "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "MODEL.ROI_BOX_HEAD.CONV_DIM", "32",
            "MODEL.ROI_BOX_HEAD.FC_DIM", "64", "MODEL.ROI_MASK_HEAD.CONV_DIM", "32",
            "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "128", "INPUT.MIN_SIZE_TEST", "64",
            "INPUT.MAX_SIZE_TEST", "128", "DATASETS.TRAIN", f"('{synthetic_coco}',)",
            "DATASETS.TEST", f"('{synthetic_coco}',)", "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "2",
            "SOLVER.MAX_ITER", "3", "SOLVER.STEPS", "()", "SOLVER.WARMUP_ITERS", "0", "SOLVER.BASE_LR", "0.001",
            "OUTPUT_DIR", str(tmp_path / "out")]
    args = train_net.argument_parser().parse_args(["--config-file", str(tiny), *opts])
    results = train_net.main(args)
    assert_coco_results(results, ["bbox", "segm"])
    weights = tmp_path / "out" / "model_final.pth"
    assert weights.is_file()
    # --eval-only on the saved weights reproduces the evaluation that ended training.
    eval_args = train_net.argument_parser().parse_args(
        ["--config-file", str(tiny), "--eval-only", *opts, "MODEL.WEIGHTS", str(weights)])
    evaluated = train_net.main(eval_args)
    for task in ("bbox", "segm"):
        assert evaluated[task] == pytest.approx(results[task], nan_ok=True)


def _train_and_snapshot(cfg):
    trainer = d2.trainer.Trainer(cfg)
    trainer.resume_or_load(resume=False)
    upsampler = trainer.model.backbone.upsampler
    before = {k: v.clone() for k, v in upsampler.state_dict().items()}
    trainer.train()
    return upsampler, before


@pytest.mark.parametrize("frozen", [True, False])
def test_frozen_means_frozen(frozen, synthetic_coco, tmp_path):
    cfg = tiny_yacs_cfg(MASK_RCNN / "mask_rcnn_vit_s14_anyup_2x.yaml", "anyup", synthetic_coco, str(tmp_path))
    cfg.defrost()
    cfg.MODEL.UPSAMPLER.FROZEN = frozen
    cfg.SOLVER.MAX_ITER = 2
    cfg.DATASETS.TEST = ()  # no evaluation in this test
    upsampler, before = _train_and_snapshot(cfg)
    after = upsampler.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    if frozen:
        assert not upsampler.training
        assert changed == []
        assert all(p.grad is None and not p.requires_grad for p in upsampler.parameters())
    else:
        assert upsampler.training
        assert any(k.startswith("image_encoder") for k in changed), changed


def test_lazyconfig_mask_rcnn_trains_and_evaluates(synthetic_coco, tmp_path):
    from detectron2.config import LazyConfig
    from detectron2.data import MetadataCatalog
    import detectron2.data.transforms as T
    from detectron2.layers import ShapeSpec

    cfg = LazyConfig.load(str(CONFIG_DIR / "lazy" / "mask_rcnn_vit_s14_anyup_2x.py"))
    cfg.model.backbone.vit.update(pretrained=None, **TINY_VIT)
    cfg.model.backbone.upsampler.update(pretrained=None, qk_dim=16)
    cfg.model.backbone.out_channels = 32
    cfg.model.proposal_generator.head.in_channels = 32
    cfg.model.proposal_generator.anchor_generator.sizes = [[8], [16], [32], [64], [128]]
    roi = cfg.model.roi_heads
    roi.num_classes = 2
    roi.batch_size_per_image = 32
    roi.box_head.update(input_shape=ShapeSpec(channels=32, height=7, width=7), conv_dims=[32], fc_dims=[64])
    roi.box_predictor.input_shape = ShapeSpec(channels=64)
    roi.mask_head.input_shape = ShapeSpec(channels=32, height=14, width=14)
    roi.mask_head.conv_dims = [32, 32]
    roi.box_predictor.test_score_thresh = 0.0
    cfg.dataloader.train.dataset.names = cfg.dataloader.test.dataset.names = synthetic_coco
    cfg.dataloader.train.mapper.augmentations = [T.ResizeShortestEdge(64, 128)]
    cfg.dataloader.test.mapper.augmentations = [T.ResizeShortestEdge(64, 128)]
    cfg.dataloader.train.total_batch_size = 2
    cfg.dataloader.train.num_workers = cfg.dataloader.test.num_workers = 0
    cfg.dataloader.evaluator.output_dir = str(tmp_path / "eval")
    cfg.train.update(device="cpu", max_iter=3, output_dir=str(tmp_path), checkpointer={"period": 1000})
    cfg.lr_multiplier.scheduler.milestones = [1, 2, 3]
    cfg.lr_multiplier.warmup_length = 0.0

    model, results = d2.trainer.lazy_train(cfg)
    assert isinstance(model.backbone, d2.UpsampledViTBackbone) and model.backbone.factor == 2
    assert MetadataCatalog.get(synthetic_coco).thing_classes == ["box", "triangle"]
    assert_coco_results(results, ["bbox", "segm"])
