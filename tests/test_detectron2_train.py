"""Real Detectron2 training runs on the synthetic COCO set, then COCOEvaluator (pycocotools)."""
import math

import pytest
import torch

from detectron2_helpers import (  # noqa: F401
    CONFIG_DIR, MASK_RCNN, TINY_VIT, d2, load_tool, no_network, synthetic_coco, synthetic_coco_files, tiny_yacs_cfg)

COCO_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def assert_coco_results(results, tasks):
    for task in tasks:
        assert set(COCO_KEYS) <= set(results[task]), results.get(task)
        for key in COCO_KEYS:  # NaN would mean "no predictions" or no object of that size
            value = results[task][key]
            assert math.isfinite(value) or key in ("APm", "APl"), (task, key, value)
            assert math.isnan(value) or 0.0 <= value <= 100.0
        # AP averages the APs at IoU 0.50:0.95, each at most the loosest one's
        assert results[task]["AP"] <= results[task]["AP50"] and results[task]["AP75"] <= results[task]["AP50"]


def tiny_opts(dataset, output_dir):
    """Command-line overrides of tools/train_net.py for the tiny model on ``dataset``."""
    return ["MODEL.DEVICE", "cpu", "MODEL.SFP.OUT_CHANNELS", "32",
            "MODEL.ANCHOR_GENERATOR.SIZES", "[[8], [16], [32], [64], [128]]",
            "MODEL.ROI_HEADS.NUM_CLASSES", "2", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32",
            "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "MODEL.RPN.POST_NMS_TOPK_TEST", "100",
            "TEST.DETECTIONS_PER_IMAGE", "20", "MODEL.ROI_BOX_HEAD.CONV_DIM", "32",
            "MODEL.ROI_BOX_HEAD.FC_DIM", "64", "MODEL.ROI_MASK_HEAD.CONV_DIM", "32",
            "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "128", "INPUT.MIN_SIZE_TEST", "64",
            "INPUT.MAX_SIZE_TEST", "128", "DATASETS.TRAIN", f"('{dataset}',)",
            "DATASETS.TEST", f"('{dataset}',)", "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "2",
            "SOLVER.MAX_ITER", "3", "SOLVER.STEPS", "()", "SOLVER.WARMUP_ITERS", "0", "SOLVER.BASE_LR", "0.001",
            "SOLVER.CHECKPOINT_PERIOD", "1", "OUTPUT_DIR", str(output_dir)]


def assert_trained(output_dir, frozen_prefixes) -> None:
    """The weights after the last iteration differ from those after the first (checkpoint
    every iteration) in the trainable heads, and not in the frozen parts."""
    def weights(name):
        return torch.load(output_dir / name, map_location="cpu", weights_only=False)["model"]

    first, final = weights("model_0000000.pth"), weights("model_final.pth")
    changed = {key for key, value in final.items() if not torch.equal(first[key], value)}
    for trainable in ("proposal_generator.", "roi_heads.box_predictor.", "roi_heads.mask_head."):
        assert any(key.startswith(trainable) for key in changed), trainable
    assert not [key for key in changed if key.startswith(frozen_prefixes)]


@pytest.mark.slow
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
    opts = tiny_opts(synthetic_coco, tmp_path / "out")
    args = train_net.argument_parser().parse_args(["--config-file", str(tiny), *opts])
    results = train_net.main(args)
    assert_coco_results(results, ["bbox", "segm"])
    assert_trained(tmp_path / "out", ("backbone.vit.", "backbone.upsampler."))  # both FROZEN in the variant
    weights = tmp_path / "out" / "model_final.pth"
    assert weights.is_file()
    # --eval-only on the saved weights reproduces the evaluation that ended training.
    eval_args = train_net.argument_parser().parse_args(
        ["--config-file", str(tiny), "--eval-only", *opts, "MODEL.WEIGHTS", str(weights)])
    evaluated = train_net.main(eval_args)
    for task in ("bbox", "segm"):
        assert evaluated[task] == pytest.approx(results[task], nan_ok=True)


@pytest.mark.slow
def test_eval_only_with_a_full_checkpoint_needs_no_network(synthetic_coco, tmp_path, no_network):
    """The AnyUp variant keeps its pre-trained sources (VIT.PRETRAINED "default": timm's hub;
    UPSAMPLER.PRETRAINED "anyup_multi_backbone": a URL); MODEL.WEIGHTS holds both parts, so
    --eval-only fetches neither and evaluates exactly the saved weights."""
    from detectron2.checkpoint import DetectionCheckpointer

    tiny = tmp_path / "tiny.yaml"
    vit_kwargs = ", ".join(f"{k}: {v}" for k, v in TINY_VIT.items())
    tiny.write_text(f"""_BASE_: "{MASK_RCNN / 'mask_rcnn_vit_s14_anyup_2x.yaml'}"
MODEL:
  VIT:
    KWARGS: {{{vit_kwargs}}}
  UPSAMPLER:
    KWARGS: {{qk_dim: 16}}
""")
    train_net = load_tool("train_net")
    opts = tiny_opts(synthetic_coco, tmp_path / "out")
    cfg = train_net.setup_yacs(train_net.argument_parser().parse_args(["--config-file", str(tiny), *opts]))
    assert (cfg.MODEL.VIT.PRETRAINED, cfg.MODEL.UPSAMPLER.PRETRAINED) == ("default", "anyup_multi_backbone")
    cfg.defrost()
    bare = cfg.clone()
    bare.MODEL.VIT.PRETRAINED = bare.MODEL.UPSAMPLER.PRETRAINED = ""
    saved = d2.trainer.Trainer.build_model(bare)  # random weights: the "full checkpoint"
    DetectionCheckpointer(saved, save_dir=str(tmp_path)).save("full")
    weights = str(tmp_path / "full.pth")

    cfg.MODEL.WEIGHTS = weights
    loaded = d2.trainer.build_eval_model(cfg).state_dict()
    assert loaded.keys() == saved.state_dict().keys()
    assert all(torch.equal(loaded[k], v) for k, v in saved.state_dict().items())

    args = train_net.argument_parser().parse_args(
        ["--config-file", str(tiny), "--eval-only", *opts, "MODEL.WEIGHTS", weights])
    assert_coco_results(train_net.main(args), ["bbox", "segm"])  # the same path, to the end, offline


def test_eval_only_refuses_a_checkpoint_with_part_of_the_backbone(tmp_path):
    cfg = tiny_yacs_cfg(MASK_RCNN / "mask_rcnn_vit_s14_anyup_2x.yaml", "anyup", output_dir=str(tmp_path))
    cfg.defrost()
    cfg.MODEL.WEIGHTS = str(tmp_path / "partial.pth")
    torch.save({"model": {"backbone.vit.model.cls_token": torch.zeros(1, 1, TINY_VIT["embed_dim"])}},
               cfg.MODEL.WEIGHTS)
    with pytest.raises(ValueError, match=r"checkpoint .*partial.pth holds backbone.vit weights but lacks \d+ of "
                                         r"them \(e.g. backbone.vit.model.blocks.0.attn.proj.bias\): it is not a "
                                         r"checkpoint of this model"):
        d2.trainer.build_eval_model(cfg)


def _train_and_snapshot(cfg):
    trainer = d2.trainer.Trainer(cfg)
    trainer.resume_or_load(resume=False)
    upsampler = trainer.model.backbone.upsampler
    before = {k: v.clone() for k, v in upsampler.state_dict().items()}
    trainer.train()
    return upsampler, before


@pytest.mark.slow
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


@pytest.mark.slow
def test_lazyconfig_mask_rcnn_trains_and_evaluates(synthetic_coco, tmp_path, no_network):
    """Trains and evaluates; then the saved weights evaluate the same with the config's
    pre-trained sources restored (nothing fetched: the checkpoint holds them)."""
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
    cfg.train.update(device="cpu", max_iter=3, output_dir=str(tmp_path), checkpointer={"period": 1})
    cfg.lr_multiplier.scheduler.milestones = [1, 2, 3]
    cfg.lr_multiplier.warmup_length = 0.0

    model, results = d2.trainer.lazy_train(cfg)
    assert isinstance(model.backbone, d2.UpsampledViTBackbone) and model.backbone.factor == 2
    assert MetadataCatalog.get(synthetic_coco).thing_classes == ["box", "triangle"]
    assert_coco_results(results, ["bbox", "segm"])
    assert_trained(tmp_path, ("backbone.vit.", "backbone.upsampler."))  # frozen=True, upsampler_frozen=True

    cfg.model.backbone.vit.pretrained = True
    cfg.model.backbone.upsampler.pretrained = "anyup_multi_backbone"
    cfg.train.init_checkpoint = str(tmp_path / "model_final.pth")
    evaluated = d2.trainer.lazy_test(cfg, d2.trainer.lazy_eval_model(cfg))
    for task in ("bbox", "segm"):
        assert evaluated[task] == pytest.approx(results[task], nan_ok=True)
