"""Dataset variants matching the published probe protocols (JAFAR/AnyUp, Probe3D).

* ``ADE20K151Dataset``: ADE20K with 151 classes, index 0 ("other") a scored class.
* ``COCOStuff27Dataset``: COCO-Stuff raw stuffthingmaps (fine ids 0-181, 255 unlabeled)
  mapped to the 27 coarse classes; images listed by IIC's curated ``ann_file``.
* ``NYUNormalsDataset``: NYUv2 images with surface-normal maps (RGB PNG, see
  :class:`~anyup_dense.integrations.mmseg.transforms.LoadNormalAnnotation`).
"""
import os.path as osp
from typing import List

from mmengine import fileio
from mmseg.datasets import ADE20KDataset, BaseSegDataset
from mmseg.registry import DATASETS

from anyup_dense.integrations.mmseg.coco_stuff27 import COARSE_CLASSES, COARSE_PALETTE, FINE_TO_COARSE


@DATASETS.register_module()
class ADE20K151Dataset(ADE20KDataset):
    """``ADEChallengeData2016`` layout (``images/…/ADE_*.jpg`` + ``annotations/…/ADE_*.png``),
    labels used as stored: 0 = "other" (a class), 1-150 the ADE classes; ``reduce_zero_label``
    is False by default."""

    METAINFO = dict(classes=("other",) + ADE20KDataset.METAINFO["classes"],
                    palette=[[0, 0, 0]] + ADE20KDataset.METAINFO["palette"])

    def __init__(self, reduce_zero_label: bool = False, **kwargs):
        super().__init__(reduce_zero_label=reduce_zero_label, **kwargs)


@DATASETS.register_module()
class COCOStuff27Dataset(BaseSegDataset):
    """COCO-Stuff 164k with the 27 coarse classes of IIC/STEGO/JAFAR.

    Layout: ``images/{train2017,val2017}/<id>.jpg``, ``annotations/{…}/<id>.png`` (raw fine
    ids), ``curated/{…}/Coco164kFull_Stuff_Coarse.txt`` (one id per line) as ``ann_file``.
    Loading maps each fine id to its coarse id; 255 stays ignored.
    """

    METAINFO = dict(classes=COARSE_CLASSES, palette=COARSE_PALETTE)

    def __init__(self, img_suffix: str = ".jpg", seg_map_suffix: str = ".png", **kwargs):
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, **kwargs)

    @classmethod
    def get_label_map(cls, new_classes=None) -> dict:
        """The fine -> coarse map, applied by ``LoadAnnotations``."""
        if new_classes is not None and tuple(new_classes) != COARSE_CLASSES:
            raise ValueError("COCOStuff27Dataset does not support custom class subsets")
        return dict(enumerate(FINE_TO_COARSE))


@DATASETS.register_module()
class NYUNormalsDataset(BaseSegDataset):
    """NYUv2 surface normals: ``images/{train,test}/<name>.jpg`` with
    ``normals/{train,test}/<name>.png`` (same stem, searched recursively).

    ``data_prefix=dict(img_path='images/test', normal_map_path='normals/test')``. Each
    sample gets ``normal_map_path``; load it with ``LoadNormalAnnotation``.
    """

    METAINFO = dict(classes=("x", "y", "z"), palette=[[255, 0, 0], [0, 255, 0], [0, 0, 255]])

    def __init__(self, img_suffix: str = ".jpg", normal_map_suffix: str = ".png", data_prefix: dict = None,
                 **kwargs):
        self.normal_map_suffix = normal_map_suffix
        if data_prefix is None:
            data_prefix = dict(img_path="images/test", normal_map_path="normals/test")
        super().__init__(img_suffix=img_suffix, data_prefix=data_prefix, **kwargs)

    def load_data_list(self) -> List[dict]:
        img_dir = self.data_prefix["img_path"]
        normal_dir = self.data_prefix.get("normal_map_path")
        data_list = []
        for name in fileio.list_dir_or_file(img_dir, list_dir=False, suffix=self.img_suffix, recursive=True,
                                            backend_args=self.backend_args):
            info = dict(img_path=osp.join(img_dir, name), seg_fields=[], label_map=None,
                        reduce_zero_label=False)
            if normal_dir is not None:
                info["normal_map_path"] = osp.join(normal_dir, name[:-len(self.img_suffix)] + self.normal_map_suffix)
            data_list.append(info)
        return sorted(data_list, key=lambda info: info["img_path"])
