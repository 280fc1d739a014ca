"""Shared helpers for the Detectron2 tests (no tests here): the synthetic COCO set, the
overrides that shrink a config to a tiny ViT on 64-128 px images, and a CPU DDP worker."""
import datetime
import functools

import pytest
import torch

import anyup_dense.integrations.detectron2 as d2
from helpers import ROOT, load_tool
from upsampler_helpers import TINY_UPSAMPLER_KWARGS

CONFIG_DIR = ROOT / "configs" / "detectron2"
MASK_RCNN = CONFIG_DIR / "COCO-InstanceSegmentation"
SYNTHETIC_COCO = "anyup_synthetic_coco"

TINY_VIT = {"img_size": 56, "depth": 2, "embed_dim": 32, "num_heads": 2}
TINY_UPSAMPLER = {"anyup": {"qk_dim": 16}, "featsharp": {"dim": 32, "model_resolution": 28}}
TINY_VIT_FOR = {"featup_jbu": {"embed_dim": 384, "num_heads": 6}}  # its 'dinov2' weights fix C = 384
TINY_ANCHORS = [[8], [16], [32], [64], [128]]


@pytest.fixture(scope="session")
def synthetic_coco_files(tmp_path_factory):
    """(annotation json, image root) of a 4-image, 2-category COCO-format set."""
    return load_tool("make_synthetic_coco").make_synthetic_coco(str(tmp_path_factory.mktemp("synthetic_coco")))


def register_synthetic_coco(json_file: str, image_root: str) -> str:
    """Register the synthetic set in this process (once) under :data:`SYNTHETIC_COCO`."""
    from detectron2.data import DatasetCatalog
    from detectron2.data.datasets import register_coco_instances

    if SYNTHETIC_COCO not in DatasetCatalog.list():
        register_coco_instances(SYNTHETIC_COCO, {}, json_file, image_root)
    return SYNTHETIC_COCO


@pytest.fixture(scope="session")
def synthetic_coco(synthetic_coco_files):
    """Name of the registered synthetic COCO-format set."""
    return register_synthetic_coco(*synthetic_coco_files)


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """No network and empty weight caches: any socket connection or name lookup raises
    ``OSError`` and Hugging Face runs offline (``HF_HUB_OFFLINE=1``; huggingface_hub reads it
    when imported, hence also its constant: without it, it retries for about 50 s)."""
    import socket

    from huggingface_hub import constants

    def refuse(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_home" / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


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


# Small upsampler arguments for a ViT of TINY_VIT (FeatSharp's dim, patch_size and
# model_resolution are derived from it).
assert TINY_VIT["embed_dim"] == 32  # what TINY_UPSAMPLER_KWARGS are made for


def trainable_upsampler_cfg(name: str, dataset: str, output_dir: str):
    """The tiny bilinear Mask R-CNN with upsampler ``name`` (``TINY_UPSAMPLER_KWARGS``), trained
    with the detector (``FROZEN False``), no evaluation."""
    from detectron2.config import CfgNode

    cfg = tiny_yacs_cfg(MASK_RCNN / "mask_rcnn_vit_s14_bilinear_2x.yaml", "bilinear", dataset, output_dir)
    cfg.defrost()
    cfg.MODEL.UPSAMPLER.NAME = name
    cfg.MODEL.UPSAMPLER.KWARGS = CfgNode(TINY_UPSAMPLER_KWARGS.get(name, {}), new_allowed=True)
    cfg.MODEL.UPSAMPLER.FROZEN = False
    cfg.DATASETS.TEST = ()
    cfg.freeze()
    return cfg


def _trainable_weights(module: torch.nn.Module) -> dict:
    return {k: p.detach().clone() for k, p in module.named_parameters() if p.requires_grad}


def ddp_train_worker(local_rank: int, world_size: int, init_method: str, upsamplers, coco_files, out_dir: str):
    """One process of a CPU DDP run: for each upsampler, ``Trainer`` (Detectron2's
    ``DefaultTrainer`` wrapping) trains :func:`trainable_upsampler_cfg` for 3 iterations.
    Saves ``{upsampler: {"error", "iter", "ddp", "before", "after"}}`` (backbone trainable
    weights after wrapping and after training) to ``out_dir/rank{local_rank}.pt``.

    Set-up as ``detectron2.engine.launch`` does it (process group, ``comm._LOCAL_PROCESS_GROUP``,
    a barrier) but with gloo: 0.6's launch insists on CUDA and NCCL. One change to the
    wrapping: ``device_ids=None``, which DistributedDataParallel requires for CPU modules
    (``create_ddp_model`` passes the local rank); ``find_unused_parameters`` stays False.
    """
    import torch.distributed as dist
    import detectron2.engine.defaults as d2_defaults
    from detectron2.utils import comm

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init_method, world_size=world_size, rank=local_rank,
                            timeout=datetime.timedelta(seconds=120))
    comm._LOCAL_PROCESS_GROUP = dist.new_group(list(range(world_size)))
    comm.synchronize()
    d2_defaults.create_ddp_model = functools.partial(d2_defaults.create_ddp_model, device_ids=None)
    dataset = register_synthetic_coco(*coco_files)
    results = {}
    for name in upsamplers:
        cfg = trainable_upsampler_cfg(name, dataset, f"{out_dir}/{name}")
        torch.manual_seed(local_rank)  # different initial weights per rank: DDP must broadcast rank 0's
        try:
            trainer = d2.trainer.Trainer(cfg)
            before = _trainable_weights(trainer.model.module.backbone)
            trainer.train()
            results[name] = {"error": None, "iter": trainer.iter, "before": before,
                             "after": _trainable_weights(trainer.model.module.backbone),
                             "ddp": {"type": type(trainer.model).__name__,
                                     "find_unused_parameters": trainer.model.find_unused_parameters}}
        except Exception as err:  # reported by the test, per upsampler
            results[name] = {"error": f"{type(err).__name__}: {err}"}
        comm.synchronize()
    torch.save(results, f"{out_dir}/rank{local_rank}.pt")
    dist.destroy_process_group()
