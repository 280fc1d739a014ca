"""Tiny synthetic datasets in the exact on-disk layouts the mmseg configs read.

    python tools/make_synthetic_mmseg.py data_synthetic --train 4 --val 2
    # or: from tools.make_synthetic_mmseg import make_synthetic; make_synthetic(root)

Each image is a few coloured blocks; each block's label (class, depth, normal) is a
function of its colour, so a probe can learn something in a few iterations. Layouts:

  ade/ADEChallengeData2016/{images,annotations}/{training,validation}/ADE_{train,val}_*.{jpg,png}
      labels 0-150 (0 = "other"), uint8
  coco_stuff164k/images/{train2017,val2017}/<id>.jpg, annotations/{…}/<id>.png (raw fine ids
      0-181, 255 unlabeled), curated/{…}/Coco164kFull_Stuff_Coarse.txt (one id per line)
  VOCdevkit/VOC2012/{JPEGImages,SegmentationClass}/<stem>.{jpg,png} (palette PNG, 0-20, 255),
      ImageSets/Segmentation/{train,val}.txt
  cityscapes/leftImg8bit/{train,val}/<city>/<stem>_leftImg8bit.png,
      gtFine/{…}/<city>/<stem>_gtFine_labelTrainIds.png (0-18, 255)
  nyu/images/{train,test}/<scene>_<id>.jpg, annotations/{…}/<scene>_<id>.png (uint16 mm),
      normals/{…}/<scene>_<id>.png (RGB, (n + 1) * 127.5, 0 = invalid)
"""
import argparse
import os
from typing import Iterable, Tuple

import numpy as np
from PIL import Image

DATASETS = ("ade20k", "coco_stuff", "voc", "cityscapes", "nyu")
BLOCK_COLOURS = np.array([[220, 40, 40], [40, 200, 60], [50, 70, 230], [230, 220, 60]], dtype=np.float32)


def _blocks(rng: np.random.Generator, size: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """A noisy RGB image [H,W,3] uint8 of 2x2 coloured blocks (random split point and
    colours) and the block colour index [H,W] int."""
    h, w = size
    cy, cx = rng.integers(h // 4, 3 * h // 4), rng.integers(w // 4, 3 * w // 4)
    quadrant = (np.arange(h)[:, None] >= cy).astype(int) * 2 + (np.arange(w)[None, :] >= cx).astype(int)
    index = rng.permutation(len(BLOCK_COLOURS))[quadrant]
    image = BLOCK_COLOURS[index] + rng.normal(0, 12, size=(h, w, 3))
    return np.clip(image, 0, 255).astype(np.uint8), index


def _save(path: str, array: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path)


def _write_list(path: str, stems: Iterable[str]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("".join(f"{stem}\n" for stem in stems))


def _ade20k(root, rng, splits, size):
    base = os.path.join(root, "ade", "ADEChallengeData2016")
    for split, tag, n in (("training", "train", splits[0]), ("validation", "val", splits[1])):
        for i in range(n):
            image, index = _blocks(rng, size)
            stem = f"ADE_{tag}_{i + 1:08d}"
            _save(os.path.join(base, "images", split, stem + ".jpg"), image)
            _save(os.path.join(base, "annotations", split, stem + ".png"), (index * 50).astype(np.uint8))


def _coco_stuff(root, rng, splits, size):
    base = os.path.join(root, "coco_stuff164k")
    fine_ids = np.array([0, 92, 156, 171])  # person, blanket (textile), sky-other, wall
    for split, n in (("train2017", splits[0]), ("val2017", splits[1])):
        stems = [f"{i + 1:012d}" for i in range(n)]
        for stem in stems:
            image, index = _blocks(rng, size)
            label = fine_ids[index].astype(np.uint8)
            label[:2] = 255  # an unlabeled band
            _save(os.path.join(base, "images", split, stem + ".jpg"), image)
            _save(os.path.join(base, "annotations", split, stem + ".png"), label)
        _write_list(os.path.join(base, "curated", split, "Coco164kFull_Stuff_Coarse.txt"), stems)


def _voc(root, rng, splits, size):
    base = os.path.join(root, "VOCdevkit", "VOC2012")
    palette = (np.arange(256 * 3) * 37 % 256).tolist()
    for split, offset, n in (("train", 0, splits[0]), ("val", 1000, splits[1])):
        stems = [f"2007_{offset + i:06d}" for i in range(n)]
        for stem in stems:
            image, index = _blocks(rng, size)
            label = (index * 5).astype(np.uint8)
            label[:, :1] = 255  # boundary / ignore
            _save(os.path.join(base, "JPEGImages", stem + ".jpg"), image)
            png = Image.fromarray(label).convert("P")  # indices kept as values
            png.putpalette(palette)
            os.makedirs(os.path.join(base, "SegmentationClass"), exist_ok=True)
            png.save(os.path.join(base, "SegmentationClass", stem + ".png"))
        _write_list(os.path.join(base, "ImageSets", "Segmentation", split + ".txt"), stems)


def _cityscapes(root, rng, splits, size):
    base = os.path.join(root, "cityscapes")
    for split, city, n in (("train", "aachen", splits[0]), ("val", "frankfurt", splits[1])):
        for i in range(n):
            image, index = _blocks(rng, size)
            stem = f"{city}_000000_{i:06d}"
            _save(os.path.join(base, "leftImg8bit", split, city, stem + "_leftImg8bit.png"), image)
            _save(os.path.join(base, "gtFine", split, city, stem + "_gtFine_labelTrainIds.png"),
                  (index * 6).astype(np.uint8))


def _nyu(root, rng, splits, size):
    from anyup_dense.integrations.mmseg.transforms import encode_normals

    base = os.path.join(root, "nyu")
    depth_mm = np.array([1000, 2000, 3000, 4500])
    directions = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0], [0.6, 0, 0.8]], dtype=np.float32)
    for split, n in (("train", splits[0]), ("test", splits[1])):
        for i in range(n):
            image, index = _blocks(rng, size)
            stem = f"bedroom_{i + 1:04d}"
            valid = np.ones(index.shape, dtype=bool)
            valid[-2:] = False  # missing depth / normals at the bottom
            depth = np.where(valid, depth_mm[index], 0).astype(np.uint16)
            _save(os.path.join(base, "images", split, stem + ".jpg"), image)
            _save(os.path.join(base, "annotations", split, stem + ".png"), depth)
            _save(os.path.join(base, "normals", split, stem + ".png"), encode_normals(directions[index], valid))


WRITERS = dict(ade20k=_ade20k, coco_stuff=_coco_stuff, voc=_voc, cityscapes=_cityscapes, nyu=_nyu)


def make_synthetic(root: str, datasets: Iterable[str] = DATASETS, num_train: int = 4, num_val: int = 2,
                   size: Tuple[int, int] = (64, 80), seed: int = 0) -> str:
    """Write the chosen synthetic datasets under ``root`` (layouts in the module docstring)
    with ``num_train``/``num_val`` images of ``size`` (H, W) each; returns ``root``."""
    unknown = set(datasets) - set(DATASETS)
    if unknown:
        raise ValueError(f"unknown datasets {sorted(unknown)}; choose from {DATASETS}")
    rng = np.random.default_rng(seed)
    for name in datasets:
        WRITERS[name](root, rng, (num_train, num_val), size)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="output folder (use it as data_root's parent)")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--train", type=int, default=4, help="training images per dataset")
    parser.add_argument("--val", type=int, default=2, help="validation images per dataset")
    parser.add_argument("--size", type=int, nargs=2, default=(64, 80), metavar=("H", "W"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    make_synthetic(args.root, args.datasets, args.train, args.val, tuple(args.size), args.seed)
    print(f"wrote {', '.join(args.datasets)} under {args.root}")


if __name__ == "__main__":
    main()
