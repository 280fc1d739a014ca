"""Peak CPU memory of one mmseg segmentor forward with an upsampler neck at full resolution.

    python tools/segmentor_memory.py --size 512 --neck AnyUpNeck [--max-pixels-per-chunk 16384]

Builds ViT (random weights) -> neck at stride 1 -> linear probe head (150 classes) in a
GuidedEncoderDecoder, runs one no-grad forward on a size x size image and prints the
process peak RSS and the part of it the forward added. Compare with the upsampler's row in
``tools/benchmark.py`` at the same output size.
"""
import argparse
import resource
import time

import torch

import anyup_dense.integrations.mmseg  # noqa: F401  (registers our modules, applies the mmcv-lite shim)
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512, help="image side (a multiple of the patch size)")
    parser.add_argument("--neck", default="AnyUpNeck", help="AnyUpNeck, FeatUpNeck, BilinearNeck, ...")
    parser.add_argument("--backbone", default="vit_small_patch16_224", help="timm ViT name")
    parser.add_argument("--max-pixels-per-chunk", type=int, default=None)
    return parser.parse_args(argv)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None) -> dict:
    args = parse_args(argv)
    init_default_scope("mmseg")
    neck = dict(type=args.neck)
    if args.max_pixels_per_chunk is not None:
        neck["max_pixels_per_chunk"] = args.max_pixels_per_chunk
    model = MODELS.build(dict(
        type="GuidedEncoderDecoder",
        data_preprocessor=dict(type="SegDataPreProcessor", mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], bgr_to_rgb=True, size=(args.size, args.size)),
        backbone=dict(type="TimmViT", model_name=args.backbone, pretrained=None),
        neck=neck,
        decode_head=dict(type="LinearProbeHead", in_channels=384, num_classes=150),
        test_cfg=dict(mode="whole"))).eval()
    patch = model.backbone.patch_size
    image = torch.randn(1, 3, args.size, args.size)
    with torch.no_grad():
        model(image[:, :, :4 * patch, :4 * patch], mode="tensor")  # warm-up on a tiny input
        before = peak_rss_mib()
        start = time.perf_counter()
        out = model(image, mode="tensor")
        seconds = time.perf_counter() - start
    result = dict(output=tuple(out.shape), peak_mib=peak_rss_mib(), forward_mib=peak_rss_mib() - before,
                  seconds=seconds)
    print(f"{args.neck} {args.size}x{args.size} ({args.backbone}): logits {result['output']}, "
          f"peak RSS {result['peak_mib']:.0f} MiB, of which the forward {result['forward_mib']:.0f} MiB, "
          f"{seconds:.1f} s")
    return result


if __name__ == "__main__":
    main()
