"""Main job, offline by default: compare every registered upsampler on one image.

    python tools/quickstart.py [--image PATH] [--size 224] [--download] [--out outputs/quickstart.png]

DINOv2 ViT-S/14 (timm) features of the image (default: the embedded test image) are upsampled
to the image size by every upsampler in ``anyup_dense.list_upsamplers()``, each built for the
backbone's channels (FeatSharp gets the ViT as its featurizer). Weights: local/cached ones,
downloaded only with ``--download`` when the machine is online, otherwise random; each row
says which. Per-image fits (upsample_anything) run with fewer steps on CPU and say so.

Writes one PNG grid (image | low-res | one panel per upsampler, one PCA basis) and prints a
table: time and peak tensor memory of one call, and feature-space preservation (mean cosine
similarity between the output area-downsampled to the feature grid and the input features;
1 = the features are preserved exactly). Default size 224 (16x16 features, x14): about a
minute on a 2-core CPU; 448 takes several times longer.
"""
import argparse
import os

import numpy as np
import torch
from PIL import Image

from anyup_dense import list_upsamplers
from anyup_dense.backbones import TimmViT, find_local_weights
from anyup_dense.compare import build_for_backbone, feature_preservation, measure
from anyup_dense.compare.report import markdown_table, panel_grid
from anyup_dense.compare.zoo import CPU_FIT_STEPS
from anyup_dense.demo_image import synthetic_image
from anyup_dense.imaging import IMAGENET_MEAN, IMAGENET_STD, center_crop_geometry, normalize
from anyup_dense.visualization import FeaturePCA

COLUMNS = ("upsampler", "weights", "time_ms", "peak_mib", "preservation", "notes")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", help="RGB image file (default: a generated test image)")
    parser.add_argument("--size", type=int, default=224, help="image side, a multiple of 14 (default 224)")
    parser.add_argument("--backbone", default="vit_small_patch14_dinov2.lvd142m", help="timm model name")
    parser.add_argument("--upsamplers", default=None,
                        help="comma-separated subset of the registered upsamplers (default: all)")
    parser.add_argument("--download", action="store_true",
                        help="download missing official weights (backbone and upsamplers) when online")
    parser.add_argument("--fit-steps", type=int, default=None,
                        help=f"steps of per-image fits (default: official on GPU, {CPU_FIT_STEPS} on CPU)")
    parser.add_argument("--out", default="outputs/quickstart.png", help="output PNG path")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    if args.size % 14 or args.size < 28:
        parser.error(f"--size must be a multiple of 14 (the ViT patch size) and at least 28, got {args.size}")
    registered = list_upsamplers()
    args.upsamplers = registered if args.upsamplers is None else args.upsamplers.split(",")
    unknown = sorted(set(args.upsamplers) - set(registered))
    if unknown:
        parser.error(f"--upsamplers: unknown {', '.join(unknown)}; registered: {', '.join(registered)}")
    return args


def fit_steps(args, name: str):
    """The per-image fit length for ``name``: ``--fit-steps``, else the CPU default, else official."""
    if args.fit_steps is not None:
        return args.fit_steps
    return CPU_FIT_STEPS.get(name) if args.device == "cpu" else None


def load_image(path, size: int) -> np.ndarray:
    if path is None:
        return synthetic_image(size)
    image = Image.open(path).convert("RGB")
    new_h, new_w, top, left = center_crop_geometry(image.height, image.width, size)
    image = image.resize((new_w, new_h), Image.BICUBIC)
    return np.asarray(image.crop((left, top, left + size, top + size)))


def to_tensor(image: np.ndarray, mean, std, device) -> torch.Tensor:
    """uint8 [H,W,3] -> normalised [1,3,H,W]."""
    return normalize(torch.from_numpy(image).permute(2, 0, 1).float().div(255), mean, std)[None].to(device)


def load_backbone(name: str, download: bool) -> TimmViT:
    """The ViT with local weights, else timm's (``download``; random if that fails), else random."""
    weights = find_local_weights(name)
    if weights is None and download:
        try:
            vit = TimmViT(name, pretrained=True)
            print(f"backbone: {name}, weights: timm (downloaded)")
            return vit
        except OSError as error:
            print(f"backbone: could not download {name} weights ({type(error).__name__}); using random")
    print(f"backbone: {name}, weights: {weights or 'random (none found locally; pass --download)'}")
    return TimmViT(name, pretrained=weights)


def compare(args) -> list:
    """Run every upsampler on the image; returns the table rows and writes the grid PNG."""
    image = load_image(args.image, args.size)
    vit = load_backbone(args.backbone, args.download).to(args.device)
    device = torch.device(args.device)
    guidance = to_tensor(image, IMAGENET_MEAN, IMAGENET_STD, device)
    with torch.inference_mode():
        (features,) = vit(to_tensor(image, vit.mean, vit.std, device))
    pca = FeaturePCA(features[0].cpu())
    panels, labels, rows = [image, pca.colour(features[0].cpu())], ["image", "low-res"], []
    for name in args.upsamplers:
        entry = build_for_backbone(name, vit, args.size, allow_download=args.download, fit_steps=fit_steps(args, name))
        entry.upsampler.to(device)
        try:
            out, seconds, peak = measure(lambda: entry.upsampler(features, guidance, **entry.call_kwargs), device)
        except ValueError as error:  # the upsampler's input contract refuses this size
            rows.append(dict(upsampler=name, weights=entry.weights, notes=f"not run: {error}"))
            panels.append(np.full((args.size, args.size, 3), 128, np.uint8))
            labels.append(f"{name} (not run)")
            print(f"  {name}: not run ({error})", flush=True)
            continue
        rows.append(dict(upsampler=name, weights=entry.weights, time_ms=seconds * 1e3, peak_mib=peak / 2 ** 20,
                         preservation=feature_preservation(out, features), notes=entry.notes))
        panels.append(pca.colour(out[0].cpu()))
        labels.append(name)
        print(f"  {name}: {seconds:.2f} s", flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    Image.fromarray(panel_grid(panels, labels, args.size)).save(args.out)
    print(f"features {tuple(features.shape)} -> {args.size}x{args.size}; wrote {args.out} "
          f"({' | '.join(labels)}; one PCA basis)")
    return rows


def main(argv=None):
    args = parse_args(argv)
    print(f"comparing {len(args.upsamplers)} upsamplers at {args.size}x{args.size} on {args.device}"
          + (f"; per-image fits use {args.fit_steps} steps" if args.fit_steps else
             "; per-image fits on CPU use fewer steps (" + ", ".join(f"{k} {v}" for k, v in CPU_FIT_STEPS.items()) + ")"
             if args.device == "cpu" else ""))
    rows = compare(args)
    print(markdown_table(rows, COLUMNS))
    print("time/peak: one call (peak = tensors allocated during it); preservation: mean cosine similarity "
          "of the output area-downsampled to the feature grid with the input features (1 = exact)")


if __name__ == "__main__":
    main()
