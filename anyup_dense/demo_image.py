"""A procedurally generated test image (no file or download needed).

Overlapping discs, bars and a striped square on a colour gradient: hard edges, thin
structures and texture, which is what distinguishes a guided upsampler from bilinear.
"""
import numpy as np


def synthetic_image(size: int = 448, seed: int = 0) -> np.ndarray:
    """uint8 RGB image [size, size, 3]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    image = np.stack([0.25 + 0.5 * x, 0.3 + 0.4 * y, 0.6 - 0.3 * x * y], axis=-1)
    for _ in range(6):
        cy, cx, r = rng.uniform(0.15, 0.85), rng.uniform(0.15, 0.85), rng.uniform(0.06, 0.18)
        image[(y - cy) ** 2 + (x - cx) ** 2 < r ** 2] = rng.uniform(0, 1, 3)
    for _ in range(3):
        top, left = rng.uniform(0, 0.8, 2)
        image[(y > top) & (y < top + 0.02) & (x > left) & (x < left + 0.5)] = rng.uniform(0, 1, 3)
    square = (y > 0.6) & (y < 0.9) & (x > 0.05) & (x < 0.35)
    stripes = (np.floor(x * size / 6) % 2).astype(bool)
    image[square & stripes] = (0.95, 0.9, 0.2)
    image[square & ~stripes] = (0.1, 0.1, 0.4)
    image += rng.normal(0, 0.01, image.shape)
    return (image.clip(0, 1) * 255).round().astype(np.uint8)
