"""Compare upsamplers under one evaluation protocol: train + evaluate each, one table.

    python tools/compare.py --protocol anyup --dataset ade20k-151 --upsamplers bilinear,featup_jbu,jafar,anyup
    torchrun --nproc_per_node 8 tools/compare.py --protocol jafar --dataset voc-21 --launcher pytorch

For each upsampler, ``configs/mmseg/compare/<protocol>_<dataset>.py`` (or ``--config``) is run
with its neck set to ``UpsamplerNeck(upsampler=NAME, ...)``: the arguments the upsampler needs
for the backbone and the official release for it (``--random-weights``: none, for smoke tests).
Runs live in ``<work-dir>/<protocol>_<dataset>/<upsampler>/``; a finished one (its
``metrics.json``) is reused. Protocol ``anyup_fsp`` trains the probe once on the low-resolution
features (``_probe/``) and evaluates it on every upsampler's output. Writes
``comparison.md``, ``comparison.csv`` and ``comparison.png`` (the first metric, with the
published value beside it) in ``<work-dir>/<protocol>_<dataset>/``.
"""
import argparse
import copy
import importlib.util
import json
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.dist import is_main_process

from anyup_dense import list_upsamplers
from anyup_dense.compare.published import SOURCES, published, table_metrics
from anyup_dense.compare.report import bar_chart, markdown_table, write_csv
from anyup_dense.compare.zoo import architecture_kwargs, release_for

TOOLS = osp.dirname(osp.abspath(__file__))
COMPARE_CONFIGS = osp.join(osp.dirname(TOOLS), "configs", "mmseg", "compare")


def load_tool(name: str):
    """tools/<name>.py by path (a plain ``import test`` can find the standard library's package)."""
    spec = importlib.util.spec_from_file_location(f"anyup_tools_{name}", osp.join(TOOLS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocol", required=True, help="anyup, jafar, naf, loftup, anyup_fsp, probe3d_depth, ...")
    parser.add_argument("--dataset", required=True, help="ade20k-151, coco-stuff-27, voc-21, cityscapes-19, nyu")
    parser.add_argument("--upsamplers", default=",".join(list_upsamplers()), help="comma-separated names")
    parser.add_argument("--config", help="config to run (default: configs/mmseg/compare/<protocol>_<dataset>.py)")
    parser.add_argument("--work-dir", default="work_dirs/compare")
    parser.add_argument("--random-weights", action="store_true", help="no official weights (smoke tests)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config settings")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none")
    args = parser.parse_args(argv)
    args.config = args.config or osp.join(COMPARE_CONFIGS, f"{args.protocol}_{args.dataset}.py")
    if not osp.isfile(args.config):
        available = sorted(f[:-3] for f in os.listdir(COMPARE_CONFIGS) if f.endswith(".py"))
        parser.error(f"no config {args.config} for --protocol {args.protocol} --dataset {args.dataset}; "
                     f"available: {', '.join(available)}")
    args.upsamplers = args.upsamplers.split(",")
    unknown = sorted(set(args.upsamplers) - set(list_upsamplers()))
    if unknown:
        parser.error(f"--upsamplers: unknown {', '.join(unknown)}; registered: {', '.join(list_upsamplers())}")
    return args


def upsampler_neck(name: str, cfg: Config, random_weights: bool) -> tuple:
    """(neck dict, weights description) for upsampler ``name`` in the config's model."""
    patch = cfg.model.data_preprocessor.size_divisor  # the configs pad to whole ViT patches
    neck = dict(type="UpsamplerNeck", upsampler=name,
                **architecture_kwargs(name, cfg.model.decode_head.in_channels, patch, cfg.crop_size))
    release = None if random_weights else release_for(name, cfg.model.backbone.model_name)
    if release is not None:
        neck["pretrained"] = release
    return neck, release or ("random (--random-weights)" if random_weights else "no release")


def run_config(cfg: Config, run_dir: str, launcher: str, checkpoint=None) -> dict:
    """Train (or, with ``checkpoint``, only evaluate) ``cfg`` through tools/train.py / test.py."""
    os.makedirs(run_dir, exist_ok=True)
    config_file = osp.join(run_dir, "config.py")
    cfg.dump(config_file)
    common = ["--work-dir", run_dir, "--launcher", launcher]
    if checkpoint is not None:
        return load_tool("test").main([config_file, checkpoint] + common)
    return load_tool("train").main([config_file] + common).test()


def evaluate(args, name: str, base: Config, out_dir: str) -> dict:
    """The metrics of upsampler ``name``: reused from its metrics.json, else run and saved."""
    run_dir = osp.join(out_dir, name)
    metrics_file = osp.join(run_dir, "metrics.json")
    if osp.isfile(metrics_file):
        with open(metrics_file) as file:
            return dict(json.load(file), reused=True)
    cfg = copy.deepcopy(base)
    neck, weights = upsampler_neck(name, cfg, args.random_weights)
    checkpoint = None
    if cfg.get("evaluate_upsamplers_on_frozen_probe", False):
        checkpoint = train_probe(args, base, osp.join(out_dir, "_probe"))
    cfg.model.neck = neck
    metrics = {k: float(v) for k, v in run_config(cfg, run_dir, args.launcher, checkpoint).items()}
    record = dict(metrics=metrics, weights=weights)
    if is_main_process():
        with open(metrics_file, "w") as file:
            json.dump(record, file, indent=1)
    return dict(record, reused=False)


def train_probe(args, base: Config, probe_dir: str) -> str:
    """Feature-space preservation: the probe trained once on the low-resolution features."""
    checkpoint = osp.join(probe_dir, f"epoch_{base.train_cfg.max_epochs}.pth")
    if not osp.isfile(checkpoint):
        run_config(copy.deepcopy(base), probe_dir, args.launcher)
    return checkpoint


def write_reports(args, results: dict, out_dir: str) -> list:
    """comparison.md / .csv / .png in ``out_dir``; returns the rows."""
    metrics = table_metrics(args.protocol, args.dataset)
    columns = ["upsampler", "weights"] + [c for m in metrics for c in (m, f"{m} (published)")] + ["run"]
    rows = []
    for name, result in results.items():
        row = dict(upsampler=name, weights=result["weights"], run="reused" if result["reused"] else "new")
        for metric in metrics:
            row[metric] = result["metrics"].get(metric)
            row[f"{metric} (published)"] = published(args.protocol, args.dataset, name, metric)
        rows.append(row)
    source = SOURCES.get(args.protocol, "none published for this protocol")
    with open(osp.join(out_dir, "comparison.md"), "w") as file:
        file.write(f"# {args.protocol} protocol, {args.dataset}\n\nPublished: {source}.\n\n")
        file.write(markdown_table(rows, columns) + "\n")
    write_csv(osp.join(out_dir, "comparison.csv"), rows, columns)
    first = metrics[0]
    bar_chart(osp.join(out_dir, "comparison.png"), list(results),
              {"this run": [r[first] for r in rows], "published": [r[f"{first} (published)"] for r in rows]},
              ylabel=first, title=f"{args.protocol} / {args.dataset}")
    return rows


def main(argv=None) -> list:
    args = parse_args(argv)
    base = Config.fromfile(args.config)
    if args.cfg_options:
        base.merge_from_dict(args.cfg_options)
    out_dir = osp.join(args.work_dir, f"{args.protocol}_{args.dataset}")
    results = {name: evaluate(args, name, base, out_dir) for name in args.upsamplers}
    if not is_main_process():
        return []
    rows = write_reports(args, results, out_dir)
    print(markdown_table(rows, list(rows[0])))
    print(f"wrote {osp.join(out_dir, 'comparison.md')}, .csv and .png")
    return rows


if __name__ == "__main__":
    main()
