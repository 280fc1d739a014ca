"""Write a config that adds an upsampler to a stock config (MMSegmentation, Detectron2 yacs or LazyConfig).

    python tools/add_upsampler.py mmseg::segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py \
        --upsampler anyup -o configs/segformer_anyup.py [--in-index -1] [--pretrained default]
        [--upsampler-args qk_dim=64] [--cfg-options model.backbone.depth=2 ...]

    python tools/add_upsampler.py COCO-Detection/retinanet_R_50_FPN_1x.yaml --upsampler anyup \
        -o retinanet_anyup.yaml [--factor 2]      # a .yaml: Detectron2 (path or model-zoo name)

    python tools/add_upsampler.py COCO-Detection/retinanet_R_50_FPN_1x.py --upsampler anyup \
        -o retinanet_anyup.py       # a Detectron2 LazyConfig (model-zoo name, or a .py importing detectron2)

The new mmseg config inherits the stock one and changes only the segmentor type, the neck, the
heads' input channels (measured on the backbone with random weights) and ``custom_imports``;
a summary of each change is printed. See ``anyup_dense/integrations/mmseg/convert.py`` and
``anyup_dense/integrations/detectron2/convert.py``.
"""
import argparse
import importlib.util
import pathlib
import sys
from typing import List, Optional, Tuple

from mmengine.config import DictAction


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config", help="stock config: a path or mmseg::REL (e.g. mmseg::pspnet/...py)")
    parser.add_argument("--upsampler", required=True, help="registered upsampler name (anyup_dense.list_upsamplers())")
    parser.add_argument("-o", "--output", required=True, help="config file to write")
    parser.add_argument("--in-index", type=int, default=-1, help="backbone output to upsample (default: the last)")
    parser.add_argument("--pretrained", default="default",
                        help="upsampler weights: 'default' (its release; none for bilinear/bicubic), 'none', "
                             "a release name, URL or path")
    parser.add_argument("--upsampler-args", nargs="+", action=DictAction, default={},
                        help="extra upsampler arguments, key=value")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, default={},
                        help="overrides of the stock config (dotted keys), applied before measuring and written out")
    parser.add_argument("--factor", type=int, default=2, help="Detectron2: upsampling factor of the ViT map")
    return parser.parse_args(argv)


def convert_detectron2(args: argparse.Namespace) -> Tuple[str, List[str]]:
    from anyup_dense.integrations.detectron2.convert import convert_yaml, yaml_text

    pretrained = "" if args.pretrained.lower() == "none" else args.pretrained
    keys, summary = convert_yaml(args.config, args.upsampler, args.factor, pretrained)
    return yaml_text(keys, summary), summary


def convert_detectron2_lazy(args: argparse.Namespace) -> Tuple[str, List[str]]:
    from anyup_dense.integrations.detectron2.convert import convert_lazy

    pretrained = "" if args.pretrained.lower() == "none" else args.pretrained
    text, summary = convert_lazy(args.config, args.upsampler, args.factor, pretrained)
    return "".join(f"# {line}\n" for line in summary) + text, summary


def convert_mmseg(args: argparse.Namespace) -> Tuple[str, List[str]]:
    import anyup_dense.integrations.mmseg  # noqa: F401  (registers the neck and segmentors)
    from anyup_dense.integrations.mmseg.convert import config_text, convert

    pretrained = None if args.pretrained.lower() == "none" else args.pretrained
    keys, summary = convert(args.config, args.upsampler, args.in_index, pretrained, dict(args.upsampler_args),
                            dict(args.cfg_options))
    return config_text(keys, summary), summary


def is_lazy_config(source: str) -> bool:
    """Whether ``source`` names a Detectron2 LazyConfig: a ``.py`` in Detectron2's model zoo
    (``COCO-Detection/retinanet_R_50_FPN_1x.py``, ``new_baselines/...``), or a ``.py`` file
    that imports ``detectron2`` (an mmseg config never does)."""
    if not source.endswith(".py") or source.startswith("mmseg::"):
        return False
    path = pathlib.Path(source)
    if path.is_file():
        return "detectron2" in path.read_text()
    spec = importlib.util.find_spec("detectron2")
    return spec is not None and any((pathlib.Path(root) / "model_zoo" / "configs" / source).is_file()
                                    for root in spec.submodule_search_locations)


def converter(config: str):
    """The converter for ``config``: Detectron2 yacs (``.yaml``), Detectron2 LazyConfig, or mmseg."""
    if config.endswith((".yaml", ".yml")):
        return convert_detectron2
    return convert_detectron2_lazy if is_lazy_config(config) else convert_mmseg


def main(argv: Optional[List[str]] = None) -> pathlib.Path:
    """Convert, write the config, print the summary; returns the written path."""
    args = parse_args(argv)
    text, summary = converter(args.config)(args)
    output = pathlib.Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    command = " ".join(["tools/add_upsampler.py", *(argv if argv is not None else sys.argv[1:])])
    output.write_text(f"# Written by {command}\n" + text)
    print(f"wrote {output}:")
    for line in summary:
        print(f"  {line}")
    return output


if __name__ == "__main__":
    main()
