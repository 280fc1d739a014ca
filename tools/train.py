"""Train an mmseg model from an anyup_dense config (mmseg's ``tools/train.py`` CLI).

    python tools/train.py configs/mmseg/linear_probe/anyup_vit-s14-dinov2_linear-probe_ade20k-151_448x448.py
    bash tools/dist_train.sh CONFIG 8 [--work-dir DIR] [--cfg-options k=v ...]
    python tools/train.py CONFIG --offline    # never reach the Hugging Face Hub (weights from the local cache)

``--offline`` sets :data:`OFFLINE_ENV` for the process (Hugging Face Hub / timm / transformers
offline mode), so a ViT whose timm weights are not in the local cache fails at once instead of
waiting on the network; the error then lists the config's ``pretrained`` keys to point at local
files (or set to ``None``) with ``--cfg-options``.
"""
import argparse
import os
from typing import List

from anyup_dense.integrations.mmseg.cli import TrustedCheckpointRunner, add_common_arguments, load_config, parse
from mmengine.config import Config
from mmengine.runner import Runner

# Offline switches of huggingface_hub (which timm downloads through), transformers and datasets.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train a segmentor / depth / normal model")
    parser.add_argument("config", help="train config file path")
    parser.add_argument("--resume", action="store_true", default=False,
                        help="resume from the latest checkpoint in the work_dir automatically")
    parser.add_argument("--amp", action="store_true", default=False, help="enable automatic-mixed-precision training")
    parser.add_argument("--offline", action="store_true", default=False,
                        help="never download: set " + ", ".join(f"{k}={v}" for k, v in OFFLINE_ENV.items())
                             + "; weights must be in the local caches or given as local files")
    return parse(add_common_arguments(parser), argv)


def go_offline() -> None:
    """Set :data:`OFFLINE_ENV` in ``os.environ``; huggingface_hub reads it when imported (already
    done by this script's imports), so its constant is set too."""
    os.environ.update(OFFLINE_ENV)
    import huggingface_hub.constants

    huggingface_hub.constants.HF_HUB_OFFLINE = True


def pretrained_keys(node, prefix: str = "model") -> List[str]:
    """``key=value`` for every set ``pretrained`` entry under ``node`` (a config dict/list)."""
    if isinstance(node, dict):
        value = node.get("pretrained")
        found = [f"{prefix}.pretrained={value!r}"] if value not in (None, False, "") else []
        return found + [line for key, value in node.items() for line in pretrained_keys(value, f"{prefix}.{key}")]
    if isinstance(node, (list, tuple)):
        return [line for i, value in enumerate(node) for line in pretrained_keys(value, f"{prefix}.{i}")]
    return []


def build_runner(cfg: Config, offline: bool) -> Runner:
    """The runner (builds the model); offline, a weight file that is not cached raises
    ``OSError`` naming the config's ``pretrained`` keys."""
    try:
        return TrustedCheckpointRunner.from_cfg(cfg)
    except OSError as err:
        if not offline:
            raise
        keys = ", ".join(pretrained_keys(cfg.model.to_dict())) or "none"
        raise OSError(f"--offline: weights the model needs are not in the local cache ({type(err).__name__}: "
                      f"{err}). The config's pretrained keys: {keys}; point them at local files, or set them to "
                      f"None, with --cfg-options KEY=VALUE, or fill the cache once online") from err


def main(argv=None) -> Runner:
    """Train; returns the Runner (its model is the trained one)."""
    args = parse_args(argv)
    if args.offline:
        go_offline()
    cfg = load_config(args)
    if args.amp:
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.loss_scale = "dynamic"
    cfg.resume = args.resume
    runner = build_runner(cfg, args.offline)
    runner.train()
    return runner


if __name__ == "__main__":
    main()
