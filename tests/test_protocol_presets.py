"""Protocol presets (configs/mmseg/_base_/protocols): each runs one short train + evaluate through
the real Runner on synthetic data, and its learning-rate schedule is asserted value by value
against the protocol's definition."""
import math

import pytest

import anyup_dense.integrations.mmseg  # noqa: F401
import torch
from mmengine import Config
from mmengine.optim import OptimWrapper
from mmengine.registry import PARAM_SCHEDULERS
from mmengine.runner import Runner

from mmseg_helpers import CONFIGS, tiny_config

COMPARE = CONFIGS / "compare"
BASE_LR = 5e-4


def cosine(step: float, period: float, base: float = BASE_LR) -> float:
    """torch/mmengine CosineAnnealingLR with eta_min 0, closed form (periodic beyond T_max)."""
    return base * (1 + math.cos(math.pi * step / period)) / 2


# protocol -> (compare config, lr at (epoch e, iteration k within it, iterations per epoch n))
DEFINITIONS = {
    "anyup": ("anyup_ade20k-151.py", lambda e, k, n: cosine(e, 20)),  # per epoch, T_max 20 epochs
    "jafar": ("jafar_ade20k-151.py", lambda e, k, n: cosine(e * n + k, 20)),  # per iteration, T_max 20 iterations
    "naf": ("naf_ade20k-151.py", lambda e, k, n: cosine(e * n + k, 20 * n)),  # per iteration, T_max all
    "loftup": ("loftup_coco-stuff-27.py", lambda e, k, n: 1e-4),  # constant NAdam 1e-4
    "probe3d_depth": ("probe3d_depth_nyu.py", None),
    "probe3d_normals": ("probe3d_normals_nyu.py", None),
    "anyup_fsp": ("anyup_fsp_ade20k-151.py", lambda e, k, n: cosine(e, 20)),
}


def probe3d_lr(e: int, k: int, n: int) -> float:
    """Probe3D: per iteration, linear warm-up from 1e-3 x lr over the first W = int(1.5 n) iterations
    (reaching lr at iteration W - 1, mmengine's LinearLR), then cosine to 0 at the end of epoch 10."""
    t, warm, total = e * n + k, int(1.5 * n), 10 * n
    if t < warm:
        return BASE_LR * (1e-3 + (1 - 1e-3) * t / (warm - 1))
    return cosine(t - warm, total - warm)


DEFINITIONS["probe3d_depth"] = (DEFINITIONS["probe3d_depth"][0], probe3d_lr)
DEFINITIONS["probe3d_normals"] = (DEFINITIONS["probe3d_normals"][0], probe3d_lr)


def simulate(cfg: Config, epochs: int, iters_per_epoch: int) -> list:
    """The lr of every iteration of a run, with the config's schedulers stepped as mmengine's
    ParamSchedulerHook steps them (iteration-based after each iteration, epoch-based after each epoch)."""
    param = torch.nn.Parameter(torch.zeros(1))
    base = cfg.optim_wrapper.optimizer.lr
    wrapper = OptimWrapper(torch.optim.SGD([param], lr=base))
    schedulers = []
    for spec in cfg.param_scheduler:
        spec = dict(spec)
        cls = PARAM_SCHEDULERS.get(spec.pop("type"))
        if spec.pop("convert_to_iter_based", False):
            schedulers.append(cls.build_iter_from_epoch(wrapper, epoch_length=iters_per_epoch, **spec))
        else:
            schedulers.append(cls(wrapper, **spec))
    lrs = []
    for _ in range(epochs):
        for _ in range(iters_per_epoch):
            lrs.append(wrapper.param_groups[0]["lr"])
            for s in schedulers:
                if not s.by_epoch:
                    s.step()
        for s in schedulers:
            if s.by_epoch:
                s.step()
    return lrs


@pytest.mark.parametrize("protocol", sorted(DEFINITIONS))
def test_schedule_matches_the_protocol_definition(protocol):
    """Every iteration of a full-length run (epochs as configured, 7 iterations per epoch)."""
    config, lr = DEFINITIONS[protocol]
    cfg = Config.fromfile(str(COMPARE / config))
    epochs, n = cfg.train_cfg.max_epochs, 7
    lrs = simulate(cfg, epochs, n)
    expected = [lr(e, k, n) for e in range(epochs) for k in range(n)]
    assert lrs == pytest.approx(expected, rel=1e-9, abs=1e-15)
    if protocol == "jafar":  # the released bug: back at the peak every 40 iterations
        assert lrs[40] == pytest.approx(BASE_LR) and lrs[20] == pytest.approx(0, abs=1e-15)


def test_presets_say_what_they_are():
    expected = {"anyup": ("AdamW", 20, 448), "jafar": ("AdamW", 20, 448), "naf": ("AdamW", 20, 448),
                "loftup": ("NAdam", 10, 224), "probe3d_depth": ("AdamW", 10, 224),
                "probe3d_normals": ("AdamW", 10, 224), "anyup_fsp": ("AdamW", 20, 448)}
    for protocol, (optimizer, epochs, crop) in expected.items():
        cfg = Config.fromfile(str(COMPARE / DEFINITIONS[protocol][0]))
        assert (cfg.optim_wrapper.optimizer.type, cfg.train_cfg.max_epochs, cfg.crop_size) == (optimizer, epochs, crop)
        header = (CONFIGS / "_base_" / "protocols" / f"{protocol}.py").read_text().splitlines()[0]
        assert header.startswith(f'# Protocol "{protocol}"'), header
    assert Config.fromfile(str(COMPARE / "loftup_coco-stuff-27.py")).train_dataloader.batch_size == 8
    fsp = Config.fromfile(str(COMPARE / "anyup_fsp_ade20k-151.py"))
    assert fsp.model.neck == dict(type="UpsamplerNeck", upsampler="bilinear", out_strides=(14, ))


def recorded_lrs(runner: Runner) -> list:
    values, _ = runner.message_hub.get_scalar("train/lr").data
    return [float(v) for v in values]


@pytest.mark.slow
@pytest.mark.parametrize("protocol", sorted(DEFINITIONS))
def test_preset_trains_and_evaluates_through_the_runner(protocol, synthetic_root, tmp_path):
    """1 epoch x 2 iterations (4 images, batch 2) on the synthetic data: the lr of each iteration
    is the definition's, and the evaluation returns finite metrics."""
    config, lr = DEFINITIONS[protocol]
    cfg = tiny_config(COMPARE / config, synthetic_root, tmp_path, "bilinear", epochs=1, keep_schedule=True)
    if protocol == "anyup_fsp":
        cfg.model.neck.out_strides = (14, )  # the tiny ViT's patch: the probe sees the 4x4 map
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert recorded_lrs(runner) == pytest.approx([lr(0, 0, 2), lr(0, 1, 2)], rel=1e-9)
    metrics = runner.val_loop.run()
    key = {"probe3d_depth": "rmse", "probe3d_normals": "normal/rmse"}.get(protocol, "mIoU")
    assert math.isfinite(float(metrics[key])), metrics
