#!/usr/bin/env python
"""Write a tiny COCO-format instance-segmentation set for smoke tests and CI.

Each image has a noisy background and a few filled shapes (axis-aligned rectangles for
category 1, triangles for category 2), each annotated with its box, polygon and area.

    python tools/make_synthetic_coco.py OUT_DIR [--num-images 4] [--seed 0]
    # OUT_DIR/images/000000.png ..., OUT_DIR/annotations.json

Importable: ``make_synthetic_coco(out_dir, ...) -> (json_path, image_root)``.
"""
import argparse
import json
import os
from typing import List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

CATEGORIES = [{"id": 1, "name": "box", "supercategory": "shape"},
              {"id": 2, "name": "triangle", "supercategory": "shape"}]
DEFAULT_SIZES = ((64, 64), (96, 80), (128, 96), (80, 112))  # (height, width)


def _shape_polygon(rng: np.random.Generator, category: int, height: int, width: int) -> List[float]:
    """A random rectangle (category 1) or triangle (category 2) as a flat [x0, y0, x1, y1, ...]."""
    size_h, size_w = rng.integers(height // 4, height // 2 + 1), rng.integers(width // 4, width // 2 + 1)
    y0, x0 = rng.integers(0, height - size_h), rng.integers(0, width - size_w)
    y1, x1 = y0 + size_h, x0 + size_w
    if category == 1:
        points = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    else:
        points = [((x0 + x1) / 2, y0), (x1, y1), (x0, y1)]
    return [float(v) for point in points for v in point]


def _polygon_area(flat: Sequence[float]) -> float:
    xs, ys = np.asarray(flat[0::2]), np.asarray(flat[1::2])
    return float(abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))) / 2)


def make_synthetic_coco(out_dir: str, num_images: int = 4, objects_per_image: int = 2,
                        sizes: Sequence[Tuple[int, int]] = DEFAULT_SIZES, seed: int = 0) -> Tuple[str, str]:
    """Write ``num_images`` PNGs (sizes cycled from ``sizes``, (height, width)) and a COCO json.

    Objects alternate between the two categories. Returns ``(json_path, image_root)``.
    """
    rng = np.random.default_rng(seed)
    image_root = os.path.join(out_dir, "images")
    os.makedirs(image_root, exist_ok=True)
    images, annotations = [], []
    for index in range(num_images):
        height, width = sizes[index % len(sizes)]
        pixels = rng.integers(0, 60, size=(height, width, 3), dtype=np.uint8)
        canvas = Image.fromarray(pixels)
        draw = ImageDraw.Draw(canvas)
        file_name = f"{index:06d}.png"
        for k in range(objects_per_image):
            category = 1 + (index + k) % len(CATEGORIES)
            polygon = _shape_polygon(rng, category, height, width)
            color = (230, 60, 60) if category == 1 else (60, 220, 90)
            draw.polygon(polygon, fill=color)
            xs, ys = polygon[0::2], polygon[1::2]
            annotations.append({
                "id": len(annotations) + 1, "image_id": index + 1, "category_id": category,
                "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)],
                "segmentation": [polygon], "area": _polygon_area(polygon), "iscrowd": 0,
            })
        canvas.save(os.path.join(image_root, file_name))
        images.append({"id": index + 1, "file_name": file_name, "height": height, "width": width})
    json_path = os.path.join(out_dir, "annotations.json")
    with open(json_path, "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": CATEGORIES}, f)
    return json_path, image_root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--num-images", type=int, default=4)
    parser.add_argument("--objects-per-image", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    json_path, image_root = make_synthetic_coco(args.out_dir, args.num_images, args.objects_per_image,
                                                seed=args.seed)
    print(f"wrote {json_path} and images under {image_root}")


if __name__ == "__main__":
    main()
