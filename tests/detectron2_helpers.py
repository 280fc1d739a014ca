"""Shared helpers for the Detectron2 tests (no tests here): the synthetic COCO set and the
overrides that shrink a config to a tiny ViT on 64-128 px images."""
import pytest

import anyup_dense.integrations.detectron2 as d2
from conftest import ROOT, load_tool
CONFIG_DIR = ROOT / "configs" / "detectron2"
TINY_VIT = {"img_size": 56, "depth": 2, "embed_dim": 32, "num_heads": 2}
TINY_UPSAMPLER = {"anyup": {"qk_dim": 16}, "featsharp": {"dim": 32, "model_resolution": 28}}
TINY_VIT_FOR = {"featup_jbu": {"embed_dim": 384, "num_heads": 6}}  # its 'dinov2' weights fix C = 384
TINY_ANCHORS = [[8], [16], [32], [64], [128]]


@pytest.fixture(scope="session")
def synthetic_coco(tmp_path_factory):
    """Name of a registered 4-image, 2-category COCO-format dataset."""
    from detectron2.data import DatasetCatalog
    from detectron2.data.datasets import register_coco_instances

    name = "anyup_synthetic_coco"
    if name not in DatasetCatalog.list():
        json_file, image_root = load_tool("make_synthetic_coco").make_synthetic_coco(
            str(tmp_path_factory.mktemp("synthetic_coco")))
        register_coco_instances(name, {}, json_file, image_root)
    return name


def tiny_yacs_overrides(upsampler: str, dataset: str, output_dir: str) -> dict:
    """Nested dict (merge with ``cfg.merge_from_other_cfg``) shrinking a yacs config here."""
    return {
        "MODEL": {
            "DEVICE": "cpu",
            "VIT": {"PRETRAINED": "", "KWARGS": {**TINY_VIT, **TINY_VIT_FOR.get(upsampler, {})}},
            "UPSAMPLER": {"PRETRAINED": "", "KWARGS": dict(TINY_UPSAMPLER.get(upsampler, {}))},
            "SFP": {"OUT_CHANNELS": 32},
            "ANCHOR_GENERATOR": {"SIZES": TINY_ANCHORS},
            "RPN": {"BATCH_SIZE_PER_IMAGE": 64, "POST_NMS_TOPK_TRAIN": 100, "POST_NMS_TOPK_TEST": 100},
            "ROI_HEADS": {"NUM_CLASSES": 2, "BATCH_SIZE_PER_IMAGE": 32, "SCORE_THRESH_TEST": 0.0},
            "ROI_BOX_HEAD": {"CONV_DIM": 32, "FC_DIM": 64},
            "ROI_MASK_HEAD": {"CONV_DIM": 32},
            "RETINANET": {"NUM_CLASSES": 2, "NUM_CONVS": 1, "SCORE_THRESH_TEST": 0.0},
        },
        "INPUT": {"MIN_SIZE_TRAIN": (64,), "MAX_SIZE_TRAIN": 128, "MIN_SIZE_TEST": 64, "MAX_SIZE_TEST": 128},
        "DATASETS": {"TRAIN": (dataset,), "TEST": (dataset,)},
        "DATALOADER": {"NUM_WORKERS": 0},
        "SOLVER": {"IMS_PER_BATCH": 2, "MAX_ITER": 3, "BASE_LR": 1e-3, "STEPS": (), "WARMUP_ITERS": 0,
                   "CHECKPOINT_PERIOD": 1000},
        "OUTPUT_DIR": output_dir,
    }


def tiny_yacs_cfg(config_file, upsampler: str = "", dataset: str = "unused", output_dir: str = "unused"):
    """A frozen yacs config: ``config_file`` with :func:`tiny_yacs_overrides` on top."""
    from detectron2.config import CfgNode, get_cfg

    cfg = d2.add_anyup_config(get_cfg())
    cfg.merge_from_file(str(config_file))
    cfg.merge_from_other_cfg(CfgNode(tiny_yacs_overrides(upsampler, dataset, output_dir)))
    cfg.freeze()
    return cfg
