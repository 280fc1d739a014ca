"""Main job on the embedded default, offline: ViT features -> bilinear and AnyUp -> PCA image.

    python tools/quickstart.py [--image PATH] [--size 448] [--out outputs/quickstart.png]

Uses timm's DINOv2 ViT-S/14 with weights found locally (``$ANYUP_DENSE_BACKBONE_WEIGHTS`` or
timm's Hugging Face cache), otherwise random weights; AnyUp's released weights from the
torch.hub cache (or ``--anyup-weights``), otherwise random weights. It says which it used,
writes a PNG (image | low-res | bilinear | AnyUp, one PCA basis) and prints timings.
"""
import argparse
import os
import time

import numpy as np
import torch
from PIL import Image

from anyup_dense import build_upsampler
from anyup_dense.backbones import IMAGENET_MEAN, IMAGENET_STD, TimmViT, find_local_weights
from anyup_dense.demo_image import synthetic_image
from anyup_dense.upsamplers.anyup import RELEASES
from anyup_dense.upsamplers.checkpoint import cached_release
from anyup_dense.visualization import FeaturePCA, side_by_side


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", help="RGB image file (default: a generated test image)")
    parser.add_argument("--size", type=int, default=448, help="image side, a multiple of 14 (default 448)")
    parser.add_argument("--backbone", default="vit_small_patch14_dinov2.lvd142m", help="timm model name")
    parser.add_argument("--anyup-weights", default=None,
                        help="AnyUp release name, URL or path (default: a cached release, else random)")
    parser.add_argument("--out", default="outputs/quickstart.png", help="output PNG path")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser.parse_args()


def load_image(path, size: int) -> np.ndarray:
    if path is None:
        return synthetic_image(size)
    image = Image.open(path).convert("RGB")
    scale = size / min(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC)
    left, top = (image.width - size) // 2, (image.height - size) // 2
    return np.asarray(image.crop((left, top, left + size, top + size)))


def to_tensor(image: np.ndarray, mean, std, device) -> torch.Tensor:
    """uint8 [H,W,3] -> normalised [1,3,H,W]."""
    t = torch.from_numpy(image).permute(2, 0, 1).float().div(255)
    return ((t - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None])[None].to(device)


def anyup_weights(requested):
    if requested is not None:
        return requested, requested
    for name in RELEASES:
        if cached_release(name, RELEASES):
            return name, f"{name} (torch.hub cache)"
    return None, "random (no released checkpoint in the torch.hub cache)"


def timed(fn):
    start = time.perf_counter()
    with torch.inference_mode():
        out = fn()
    return out, time.perf_counter() - start


def main():
    args = parse_args()
    if args.size % 14:
        raise SystemExit(f"--size must be a multiple of 14 (the ViT patch size), got {args.size}")
    image = load_image(args.image, args.size)
    weights = find_local_weights(args.backbone)
    vit = TimmViT(args.backbone, pretrained=weights).to(args.device)
    print(f"backbone: {args.backbone}, weights: {weights or 'random (none found locally)'}")
    source, description = anyup_weights(args.anyup_weights)
    anyup = build_upsampler("anyup", pretrained=source).to(args.device)
    bilinear = build_upsampler("bilinear")
    print(f"anyup weights: {description}")

    vit_input = to_tensor(image, vit.mean, vit.std, args.device)
    guidance = to_tensor(image, IMAGENET_MEAN, IMAGENET_STD, args.device)
    (features,), t_vit = timed(lambda: vit(vit_input))
    up_bilinear, t_bilinear = timed(lambda: bilinear(features, guidance))
    up_anyup, t_anyup = timed(lambda: anyup(features, guidance))

    pca = FeaturePCA(features[0].cpu())
    panels = [image] + [pca.colour(f[0].cpu()) for f in (features, up_bilinear, up_anyup)]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    Image.fromarray(side_by_side(panels, args.size)).save(args.out)
    print(f"features {tuple(features.shape)} -> {tuple(up_anyup.shape)}; wrote {args.out} "
          f"(image | low-res | bilinear | AnyUp)")
    print(f"timings on {args.device}: backbone {t_vit * 1e3:.0f} ms, bilinear {t_bilinear * 1e3:.1f} ms, "
          f"AnyUp {t_anyup * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
