"""Real mmengine ``Runner`` runs of the shipped configs on tiny synthetic data.

Each run swaps in a tiny ViT (cfg-options style), points the dataloaders at data written
by ``tools/make_synthetic_mmseg.py``, trains a few iterations and evaluates with the real
mmseg/our evaluators.
"""
import math

import pytest
import torch

import anyup_dense.integrations.mmseg  # noqa: E402,F401
from mmengine import Config  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from helpers import load_tool
from mmseg_helpers import CONFIGS, tiny_config


class TrainingRecorder(Hook):
    """Before the first iteration, copies the trainable weights and measures the loss of the
    first training batch; after training, that batch's loss again (eval mode both times)."""

    def before_train(self, runner) -> None:
        self.batch = next(iter(runner.train_dataloader))
        self.weights = {name: p.detach().clone() for name, p in runner.model.named_parameters() if p.requires_grad}
        self.loss_before = self.batch_loss(runner.model)

    def after_train(self, runner) -> None:
        self.loss_after = self.batch_loss(runner.model)

    def batch_loss(self, model: torch.nn.Module) -> float:
        training = model.training
        model.eval()
        with torch.no_grad():
            total, _ = model.parse_losses(model(**model.data_preprocessor(self.batch, True), mode="loss"))
        model.train(training)
        return total.item()

    def assert_trained(self, model: torch.nn.Module) -> None:
        """Every trainable weight changed and the loss of the recorded batch went down."""
        after = dict(model.named_parameters())
        unchanged = [name for name, before in self.weights.items() if torch.equal(before, after[name])]
        assert self.weights and not unchanged, unchanged
        assert self.loss_after < self.loss_before, (self.loss_before, self.loss_after)


def train_and_validate(cfg: Config) -> dict:
    """Trains (seeded), checks that training changed the model (:class:`TrainingRecorder`)
    and returns the validation metrics."""
    cfg.randomness = dict(seed=0)
    runner = Runner.from_cfg(cfg)
    recorder = TrainingRecorder()
    runner.register_hook(recorder)
    runner.train()
    recorder.assert_trained(runner.model)
    return runner.val_loop.run()


def assert_finite_in(metrics: dict, keys, low: float, high: float) -> None:
    for key in keys:
        assert key in metrics, f"{key} missing from {sorted(metrics)}"
        value = float(metrics[key])
        assert math.isfinite(value) and low <= value <= high, f"{key}={value}"


@pytest.mark.slow
@pytest.mark.parametrize("neck", ["bilinear", "anyup", "featup", "featsharp"])
def test_segmentation_probe_trains_and_evaluates(neck, synthetic_root, tmp_path):
    config = CONFIGS / "linear_probe" / f"{neck}_vit-s14-dinov2_linear-probe_ade20k-151_448x448.py"
    metrics = train_and_validate(tiny_config(config, synthetic_root, tmp_path, neck))
    assert_finite_in(metrics, ("aAcc", "mIoU", "mAcc"), 0.0, 100.0)
    assert (tmp_path / "epoch_2.pth").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["coco-stuff-27", "voc-21", "cityscapes-19"])
def test_other_segmentation_datasets_load_and_evaluate(dataset, synthetic_root, tmp_path):
    config = CONFIGS / "linear_probe" / f"bilinear_vit-s14-dinov2_linear-probe_{dataset}_448x448.py"
    cfg = tiny_config(config, synthetic_root, tmp_path, "bilinear", epochs=1)
    metrics = Runner.from_cfg(cfg).val()  # the dataset's loading and metric; training is the same as ADE20K's
    assert_finite_in(metrics, ("aAcc", "mIoU", "mAcc"), 0.0, 100.0)


def test_coco_stuff_labels_are_coarse(synthetic_root, tmp_path):
    cfg = tiny_config(CONFIGS / "linear_probe" / "bilinear_vit-s14-dinov2_linear-probe_coco-stuff-27_448x448.py",
                      synthetic_root, tmp_path, "bilinear")
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS

    init_default_scope("mmseg")
    dataset = DATASETS.build(cfg.val_dataloader.dataset)
    labels = dataset[0]["data_samples"].gt_sem_seg.data.unique().tolist()
    # synthetic fine ids 0 (person), 92 (textile), 156 (sky-other), 171 (wall) -> coarse 9, 17, 23, 18
    assert set(labels) <= {9, 17, 23, 18, 255} and 255 in labels and len(labels) >= 3


@pytest.mark.slow
@pytest.mark.parametrize("neck", ["bilinear", "anyup"])
def test_depth_probe_trains_and_evaluates(neck, synthetic_root, tmp_path):
    config = CONFIGS / "depth_probe" / f"{neck}_vit-s14-dinov2_depth-probe_nyu_224x224.py"
    cfg = tiny_config(config, synthetic_root, tmp_path, neck)
    metrics = train_and_validate(cfg)
    assert_finite_in(metrics, ("d1", "d2", "d3", "d1_aligned"), 0.0, 1.0)
    assert_finite_in(metrics, ("abs_rel", "rmse", "silog", "rmse_aligned"), 0.0, 100.0)
    assert metrics["rmse_aligned"] <= metrics["rmse"] + 1e-9  # the fit can only lower each image's error


@pytest.mark.slow
@pytest.mark.parametrize("neck", ["bilinear", "anyup"])
def test_normal_probe_trains_and_evaluates(neck, synthetic_root, tmp_path):
    config = CONFIGS / "normal_probe" / f"{neck}_vit-s14-dinov2_normal-probe_nyu_224x224.py"
    cfg = tiny_config(config, synthetic_root, tmp_path, neck)
    metrics = train_and_validate(cfg)
    assert_finite_in(metrics, ("normal/mean", "normal/median", "normal/rmse"), 0.0, 180.0)
    assert_finite_in(metrics, ("normal/a11.25", "normal/a22.5", "normal/a30"), 0.0, 1.0)
    assert metrics["normal/a11.25"] <= metrics["normal/a22.5"] <= metrics["normal/a30"]


@pytest.mark.slow
def test_train_and_test_tools_round_trip(synthetic_root, tmp_path):
    """tools/train.py, then tools/test.py on the saved checkpoint (the CLI path users run):
    the test tool's metrics are those of the trained model held in memory."""
    test_tool, train_tool = load_tool("test"), load_tool("train")

    config = CONFIGS / "linear_probe" / "anyup_vit-s14-dinov2_linear-probe_ade20k-151_448x448.py"
    config_file = tmp_path / "tiny.py"
    tiny_config(config, synthetic_root, tmp_path / "train", "anyup", epochs=1).dump(str(config_file))
    runner = train_tool.main([str(config_file), "--work-dir", str(tmp_path / "train")])
    trained_metrics = runner.val_loop.run()
    checkpoint = tmp_path / "train" / "epoch_1.pth"
    tested_metrics = test_tool.main([str(config_file), str(checkpoint), "--work-dir", str(tmp_path / "test")])
    assert_finite_in(tested_metrics, ("aAcc", "mIoU", "mAcc"), 0.0, 100.0)
    assert tested_metrics == pytest.approx(trained_metrics)
    with pytest.raises(FileNotFoundError):
        test_tool.main([str(config_file), str(tmp_path / "missing.pth"), "--work-dir", str(tmp_path / "test")])
