"""Visualisation of the probe outputs: segmentation, depth and surface normals.

* ``ProbeVisualizationHook``: mmseg's ``SegVisualizationHook`` drawing on the image the model
  saw (the packed input, BGR -> RGB) when the prediction has its size. The probe pipelines
  centre-crop (``ResizeCenterCrop``), so the image file at ``img_path`` is larger than the
  prediction and the stock hook fails with a boolean index mismatch. Otherwise (predictions
  resized back to the original image) it reads the file as the stock hook does.
* ``ProbeVisualizer``: mmseg's ``SegLocalVisualizer`` that also draws normal maps
  (``gt_normal_map`` / ``pred_normal_map`` [3,H,W] unit vectors, as RGB ``(n + 1) / 2``, the
  dataset's encoding) below the image; segmentation and depth are drawn as in mmseg.

    visualizer = dict(type='ProbeVisualizer', vis_backends=[dict(type='LocalVisBackend')], name='visualizer')
    default_hooks = dict(visualization=dict(type='ProbeVisualizationHook', draw=True))

``tools/test.py --show-dir DIR`` switches both on.
"""
import os.path as osp
from typing import Optional, Sequence

import mmcv
import numpy as np
import torch
from mmengine import fileio
from mmseg.engine.hooks import SegVisualizationHook
from mmseg.registry import HOOKS, VISUALIZERS
from mmseg.structures import SegDataSample
from mmseg.visualization import SegLocalVisualizer

from anyup_dense.integrations.mmseg.transforms import normals_image

PREDICTION_KEYS = ("pred_sem_seg", "pred_depth_map", "pred_normal_map")


def prediction_shape(sample: SegDataSample) -> Optional[tuple]:
    """(H, W) of the sample's prediction, ``None`` when it has none."""
    for key in PREDICTION_KEYS:
        if key in sample:
            return tuple(getattr(sample, key).data.shape[-2:])
    return None


def input_image(packed: torch.Tensor) -> np.ndarray:
    """A packed input [3,H,W] (uint8, BGR as mmcv loads it) -> RGB [H,W,3] uint8."""
    return np.ascontiguousarray(packed.cpu().numpy().transpose(1, 2, 0)[..., ::-1]).astype(np.uint8)


@HOOKS.register_module()
class ProbeVisualizationHook(SegVisualizationHook):
    """``SegVisualizationHook`` (same arguments) that draws on the packed input image when
    the prediction has its size, else on the file at ``img_path``."""

    def _after_iter(self, runner, batch_idx: int, data_batch: dict, outputs: Sequence[SegDataSample],
                    mode: str = "val") -> None:
        if self.draw is False or mode == "train" or not self.every_n_inner_iters(batch_idx, self.interval):
            return
        for index, output in enumerate(outputs):
            packed = data_batch["inputs"][index]
            if tuple(packed.shape[-2:]) == prediction_shape(output):
                image = input_image(packed)
            else:
                image = mmcv.imfrombytes(fileio.get(output.img_path, backend_args=self.backend_args),
                                         channel_order="rgb")
            self._visualizer.add_datasample(f"{mode}_{osp.basename(output.img_path)}", image, data_sample=output,
                                            show=self.show, wait_time=self.wait_time, step=runner.iter)


@VISUALIZERS.register_module()
class ProbeVisualizer(SegLocalVisualizer):
    """``SegLocalVisualizer`` (same arguments) that also draws ``gt_normal_map`` /
    ``pred_normal_map``: ground truth left, prediction right, each below the image."""

    def add_datasample(self, name: str, image: np.ndarray, data_sample: Optional[SegDataSample] = None,
                       draw_gt: bool = True, draw_pred: bool = True, show: bool = False, wait_time: float = 0,
                       out_file: Optional[str] = None, step: int = 0, with_labels: Optional[bool] = True) -> None:
        if data_sample is None or "pred_normal_map" not in data_sample:
            return super().add_datasample(name, image, data_sample, draw_gt, draw_pred, show, wait_time, out_file,
                                          step, with_labels)
        panels = []
        if draw_gt and "gt_normal_map" in data_sample:
            panels.append(data_sample.gt_normal_map.data)
        if draw_pred:
            panels.append(data_sample.pred_normal_map.data)
        drawn = np.concatenate([np.concatenate((image, self._resized(normals_image(n), image)), axis=0)
                                for n in panels], axis=1) if panels else image
        if show:
            self.show(drawn, win_name=name, wait_time=wait_time)
        if out_file is not None:
            mmcv.imwrite(mmcv.rgb2bgr(drawn), out_file)
        else:
            self.add_image(name, drawn, step)

    @staticmethod
    def _resized(panel: np.ndarray, image: np.ndarray) -> np.ndarray:
        """``panel`` at the image's size (nearest: normals are not blended across edges)."""
        if panel.shape[:2] == image.shape[:2]:
            return panel
        return mmcv.imresize(panel, (image.shape[1], image.shape[0]), interpolation="nearest")
