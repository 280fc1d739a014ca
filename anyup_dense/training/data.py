"""Images from a folder tree, and a deterministic, resumable, rank-sharded batch order.

* :class:`ImageFolder` lists every image under a root (recursively, sorted), optionally
  keeps only those whose shorter side is at least ``min_side``, and returns each as a
  float [3, size, size] tensor in [0, 1]: shorter side resized to ``size`` (bilinear,
  antialiased), then centre-cropped.
* :class:`StepBatchSampler` yields, for global step ``s``, this rank's share of the global
  batch ``s``. The order is the concatenation of per-epoch permutations seeded by
  ``(seed, epoch)``, so it is a pure function of the step: a run resumed at step ``s``
  sees the same images as an uninterrupted one.
"""
import os
from typing import Iterator, List

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from anyup_dense.imaging import resize_center_crop
from anyup_dense.training.rng import derive_seed

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def list_images(root: str) -> List[str]:
    """Sorted paths of the image files under ``root`` (recursive)."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"data folder {root!r} does not exist")
    paths = [os.path.join(d, f) for d, _, files in os.walk(root) for f in files
             if f.lower().endswith(IMAGE_EXTENSIONS)]
    if not paths:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {root!r}")
    return sorted(paths)


def load_rgb(path: str) -> torch.Tensor:
    """uint8 [3, H, W]."""
    with Image.open(path) as image:
        return torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1)


def shorter_side(path: str) -> int:
    """The image's shorter side, read from the file header (no decode)."""
    with Image.open(path) as image:
        return min(image.size)


class ImageFolder(Dataset):
    """Unlabelled images under ``root``, as float [3, size, size] in [0, 1].

    ``min_side``: drop images whose shorter side is below it (AnyUp trains on images with
    shorter side >= 448); sizes are read from the file headers at start-up.
    """

    def __init__(self, root: str, size: int, min_side: int = 0):
        self.size = size
        paths = list_images(root)
        if min_side > 0:
            paths = [p for p in paths if shorter_side(p) >= min_side]
            if not paths:
                raise ValueError(f"no image under {root!r} has a shorter side >= {min_side}")
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return resize_center_crop(load_rgb(self.paths[index]), self.size)


class StepBatchSampler:
    """Batches of dataset indices for steps ``start_step, start_step + 1, ..., end_step - 1``.

    Global batch ``s`` is positions ``[s * B * W, (s + 1) * B * W)`` of the endless stream
    ``perm(epoch 0) ++ perm(epoch 1) ++ ...``; rank ``r`` takes its ``B`` consecutive
    entries. ``B`` = per-process batch size, ``W`` = world size.
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int, start_step: int, end_step: int,
                 rank: int = 0, world_size: int = 1):
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.start_step = start_step
        self.end_step = end_step
        self.rank = rank
        self.world_size = world_size
        self._cached = (-1, None)

    def _permutation(self, epoch: int) -> torch.Tensor:
        if self._cached[0] != epoch:
            generator = torch.Generator().manual_seed(derive_seed(self.seed, epoch, 7))
            self._cached = (epoch, torch.randperm(self.num_samples, generator=generator))
        return self._cached[1]

    def indices_for_step(self, step: int) -> List[int]:
        first = (step * self.world_size + self.rank) * self.batch_size
        out = []
        for position in range(first, first + self.batch_size):
            epoch, offset = divmod(position, self.num_samples)
            out.append(int(self._permutation(epoch)[offset]))
        return out

    def __iter__(self) -> Iterator[List[int]]:
        for step in range(self.start_step, self.end_step):
            yield self.indices_for_step(step)

    def __len__(self) -> int:
        return max(0, self.end_step - self.start_step)


def make_loader(dataset: Dataset, batch_size: int, seed: int, start_step: int, end_step: int,
                rank: int, world_size: int, num_workers: int) -> DataLoader:
    """A DataLoader yielding float [B, 3, size, size] batches, one per step."""
    sampler = StepBatchSampler(len(dataset), batch_size, seed, start_step, end_step, rank, world_size)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers,
                      persistent_workers=False, pin_memory=torch.cuda.is_available())

