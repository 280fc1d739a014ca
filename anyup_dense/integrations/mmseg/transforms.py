"""Data transforms for the probe protocols.

* ``ResizeCenterCrop``: shorter side -> ``size`` (image bilinear, every label map nearest),
  centre crop ``size`` x ``size``; evaluation then runs on the crop (JAFAR/AnyUp, Probe3D).
* ``LoadNormalAnnotation``: surface normals from an RGB PNG.
* ``PackNormalInputs``: ``PackSegInputs`` that also packs ``gt_normal_map``.
"""
import io

import mmcv
import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine import fileio
from mmengine.structures import PixelData
from mmseg.datasets.transforms import PackSegInputs
from mmseg.registry import TRANSFORMS
from PIL import Image

from anyup_dense.imaging import center_crop_geometry


@TRANSFORMS.register_module()
class ResizeCenterCrop(BaseTransform):
    """Resize so the shorter side is ``size`` (aspect kept), then centre-crop ``size`` x ``size``.

    The image uses ``interpolation`` (default bilinear); every key in ``seg_fields``
    (segmentation, depth, normal maps) uses nearest neighbour. ``img_shape`` and
    ``ori_shape`` become the crop size: the protocols score predictions on the crop, and
    mmseg resizes predictions to ``ori_shape`` before its metrics compare them with the
    (cropped) labels.
    """

    def __init__(self, size: int, interpolation: str = "bilinear"):
        super().__init__()
        self.size = size
        self.interpolation = interpolation

    def _resize_crop(self, array: np.ndarray, interpolation: str) -> np.ndarray:
        new_h, new_w, top, left = center_crop_geometry(*array.shape[:2], self.size)
        array = mmcv.imresize(array, (new_w, new_h), interpolation=interpolation)
        return array[top:top + self.size, left:left + self.size]

    def transform(self, results: dict) -> dict:
        results["img"] = self._resize_crop(results["img"], self.interpolation)
        for key in results.get("seg_fields", []):
            results[key] = self._resize_crop(results[key], "nearest")
        results["img_shape"] = results["ori_shape"] = (self.size, self.size)
        return results

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, interpolation={self.interpolation!r})"


def encode_normals(normals: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """[H,W,3] unit vectors + bool mask [H,W] -> uint8 RGB [H,W,3]; invalid pixels are 0."""
    rgb = np.clip(np.round((normals + 1.0) * 127.5), 1, 255).astype(np.uint8)
    rgb[~valid] = 0
    return rgb


def normals_image(normals: torch.Tensor) -> np.ndarray:
    """[3,H,W] normals (a prediction or ground truth) -> RGB [H,W,3] uint8 as the dataset stores
    them (:func:`encode_normals`; all-zero vectors are invalid)."""
    array = normals.detach().float().cpu().numpy().transpose(1, 2, 0)
    return encode_normals(array, np.abs(array).sum(axis=-1) > 0)


def decode_normals(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB [H,W,3] -> float32 [H,W,3] in [-1,1]; all-zero (invalid) pixels -> 0 vectors."""
    normals = rgb.astype(np.float32) / 127.5 - 1.0
    normals[(rgb == 0).all(axis=-1)] = 0.0
    return normals


@TRANSFORMS.register_module()
class LoadNormalAnnotation(BaseTransform):
    """Read ``results['normal_map_path']`` (RGB PNG: value = (n + 1) * 127.5, invalid = 0,0,0)
    into ``results['gt_normal_map']`` [H,W,3] float32 and add it to ``seg_fields``."""

    def __init__(self, backend_args=None):
        super().__init__()
        self.backend_args = backend_args

    def transform(self, results: dict) -> dict:
        data = fileio.get(results["normal_map_path"], backend_args=self.backend_args)
        rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        results["gt_normal_map"] = decode_normals(rgb)
        results.setdefault("seg_fields", []).append("gt_normal_map")
        return results


@TRANSFORMS.register_module()
class PackNormalInputs(PackSegInputs):
    """``PackSegInputs`` plus ``gt_normal_map`` ([H,W,3] -> PixelData [3,H,W])."""

    def transform(self, results: dict) -> dict:
        packed = super().transform(results)
        if "gt_normal_map" in results:
            normals = np.ascontiguousarray(results["gt_normal_map"].transpose(2, 0, 1))
            packed["data_samples"].set_data(dict(gt_normal_map=PixelData(data=torch.from_numpy(normals))))
        return packed
