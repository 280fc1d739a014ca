"""Train an upsampler for a frozen timm ViT on a folder of images.

    python tools/train_upsampler.py --recipe anyup --backbone vit_small_patch14_dinov2.lvd142m \
        --data /datasets/imagenet/train --out-dir work_dirs/anyup_dinov2s
    torchrun --nproc_per_node 8 tools/train_upsampler.py --recipe anyup ...   # same flags

Every field of the recipe's config is an option (``--help`` lists them with their
published defaults); dict/tuple options take JSON, e.g. ``--backbone-kwargs '{"img_size": 518}'``.
``--resume auto`` continues from the newest checkpoint in ``--out-dir``.
"""
import argparse
import dataclasses
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from anyup_dense.training import get_recipe, recipe_names, train  # noqa: E402
from anyup_dense.training.config import parse_field  # noqa: E402


def build_parser(config_class) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", required=True, choices=recipe_names())
    for f in dataclasses.fields(config_class):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=None, metavar="VALUE",
                            type=lambda text, name=f.name: parse_field(config_class, name, text),
                            help=f"default: {default!r}")
    return parser


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--recipe", choices=recipe_names())
    known, _ = pre.parse_known_args(argv)
    if known.recipe is None:
        build_parser(get_recipe("anyup").config_class).parse_args(argv)  # prints usage / help
        return
    config_class = get_recipe(known.recipe).config_class
    args = vars(build_parser(config_class).parse_args(argv))
    recipe = args.pop("recipe")
    config = config_class(**{k: v for k, v in args.items() if v is not None})
    if not config.data:
        raise SystemExit("--data is required (a folder of images)")
    path = train(recipe, config)
    if path:
        print(f"last checkpoint: {path}")


if __name__ == "__main__":
    main()
