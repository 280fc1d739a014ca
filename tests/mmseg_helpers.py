"""Tiny mmseg runs of the shipped configs: a tiny ViT and neck, synthetic data, CPU."""
import pathlib

import torch
from mmengine import Config
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from helpers import ROOT as REPO

CONFIGS = REPO / "configs" / "mmseg"
CROP = 56
TINY_BACKBONE = dict(model_name="vit_small_patch14_dinov2", pretrained=None, img_size=CROP, depth=2, embed_dim=32,
                     num_heads=2)
# Per-neck overrides turning a published config's neck into a tiny random one.
TINY_NECKS = {
    "bilinear": {},
    "anyup": dict(pretrained=None, qk_dim=16),
    "featup": dict(backbone=None, dim=32, pretrained=None),
    "featsharp": dict(dim=32, model_resolution=CROP, num_heads=2),
}


def tiny_config(config: pathlib.Path, data_root: pathlib.Path, work_dir: pathlib.Path, neck: str,
                epochs: int = 2, keep_schedule: bool = False) -> Config:
    """The config with a tiny backbone/neck, the synthetic data, 2-epoch CPU training (with a
    2-epoch cosine unless ``keep_schedule``: then the config's own param_scheduler)."""
    cfg = Config.fromfile(str(config))
    overrides = {"model.backbone": TINY_BACKBONE, "model.decode_head.in_channels": 32,
                 "train_cfg.max_epochs": epochs, "train_cfg.val_interval": epochs,
                 "env_cfg.dist_cfg.backend": "gloo", "work_dir": str(work_dir),
                 "default_hooks.checkpoint.interval": epochs, "default_hooks.logger.interval": 1}
    if not keep_schedule:
        overrides["param_scheduler"] = [dict(type="CosineAnnealingLR", T_max=epochs, by_epoch=True, begin=0,
                                             end=epochs)]
    overrides.update({f"model.neck.{k}": v for k, v in TINY_NECKS[neck].items()})
    for split in ("train", "val", "test"):
        loader = f"{split}_dataloader"
        root = cfg[loader]["dataset"]["data_root"].replace("data/", "", 1)
        overrides.update({f"{loader}.num_workers": 0, f"{loader}.persistent_workers": False,
                          f"{loader}.batch_size": 2, f"{loader}.dataset.data_root": str(data_root / root)})
        for transform in cfg[loader]["dataset"]["pipeline"]:
            if transform["type"] == "ResizeCenterCrop":
                transform["size"] = CROP
    cfg.merge_from_dict(overrides)
    return cfg


def batch(n: int = 2, height: int = 56, width: int = 56) -> dict:
    """A segmentation batch of random uint8 images and 4-class labels, as a dataloader yields it."""
    samples = []
    for _ in range(n):
        sample = SegDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width),
                                             pad_shape=(height, width)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 4, (1, height, width)))
        samples.append(sample)
    return dict(inputs=[torch.randint(0, 255, (3, height, width), dtype=torch.uint8) for _ in range(n)],
                data_samples=samples)
