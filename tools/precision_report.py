"""Low-precision error of every upsampler against its own float32 output (the table of docs/precision.md).

    python tools/precision_report.py [--upsamplers anyup,naf] [--channels 384]

For each upsampler (random weights, seed 0, C channels): the float32 output on fixed random
features and image, then the same weights under CPU ``torch.autocast`` (bf16, fp16) and cast
to bf16/fp16 (module and inputs). Prints the mean relative error |out - ref|_1 / |ref|_1 of
each as a Markdown table. Shapes are small (CPU low-precision convolutions are slow) but the
channel count is the backbones' (384).
"""
import argparse
import warnings
from typing import Dict

import torch

from anyup_dense import build_upsampler, list_upsamplers

# name -> (constructor arguments for C channels, feature grid, image side)
SETTINGS = {
    "naf": (lambda c: {}, 16, 64),  # NATTEN's dilated window needs k * (H // h) <= H
    "featsharp": (lambda c: dict(dim=c, model_resolution=56, patch_size=14, num_heads=4), 4, 56),
    "upsample_anything": (lambda c: dict(steps=5), 8, 56),
}
# FeatUp implicit is left out by default: its output is a per-image fit on the backbone's views
# (a featurizer and 1200 optimisation steps), not a function of fixed weights to compare.
UNCOMPARABLE = ("featup_implicit",)
DEFAULT = (lambda c: {"anyup": {}, "featup_jbu": {"dim": c}, "jafar": {"v_dim": c}, "loftup": {"dim": c}}, 8, 56)


def _setting(name: str, channels: int):
    kwargs, grid, side = SETTINGS.get(name, (lambda c: DEFAULT[0](c).get(name, {}), *DEFAULT[1:]))
    return kwargs(channels), grid, side


def mean_relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return ((ours.float() - ref).abs().mean() / ref.abs().mean()).item()


def measure(name: str, channels: int = 384) -> Dict[str, float]:
    """{"autocast bf16", "bf16 module", "autocast fp16", "fp16 module"} -> mean relative error."""
    kwargs, grid, side = _setting(name, channels)
    torch.manual_seed(0)
    model = build_upsampler(name, **kwargs).eval()
    features, image = torch.randn(1, channels, grid, grid), torch.randn(1, 3, side, side)
    extra = {"tile_features": torch.randn(1, channels, 2 * grid, 2 * grid)} if name == "featsharp" else {}
    with torch.no_grad():
        ref = model(features, image, **extra)
        errors = {}
        for label, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
            with torch.autocast("cpu", dtype=dtype):
                errors[f"autocast {label}"] = mean_relative_error(model(features, image, **extra), ref)
            low = build_upsampler(name, **kwargs).eval()
            low.load_state_dict(model.state_dict())
            low.to(dtype)
            out = low(features.to(dtype), image.to(dtype), **{k: v.to(dtype) for k, v in extra.items()})
            errors[f"{label} module"] = mean_relative_error(out, ref)
    return errors


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--upsamplers", default=",".join(n for n in list_upsamplers() if n not in UNCOMPARABLE))
    parser.add_argument("--channels", type=int, default=384)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="Mismatch dtype between input and weight")
    columns = ("autocast bf16", "bf16 module", "autocast fp16", "fp16 module")
    print("| upsampler | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for name in args.upsamplers.split(","):
        errors = measure(name, args.channels)
        print(f"| {name} | " + " | ".join(f"{100 * errors[c]:.2f}%" for c in columns) + " |", flush=True)


if __name__ == "__main__":
    main()
