"""Lean checkpoints (``LeanCheckpointHook``, on in the probe schedules): the frozen backbone
and upsampler, built from their weights files, are left out of each checkpoint and restored
from those files on load; ``--resume`` continues the run exactly and ``tools/test.py`` gives
the metrics of a full checkpoint.

A tiny AnyUp linear probe is trained for two epochs (checkpoints after each). Its backbone
and upsampler load weights files written here (standing in for released weights).
"""
import shutil

import pytest
import torch
from mmengine import Config
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

from anyup_dense import build_upsampler
from anyup_dense.backbones import TimmViT
from anyup_dense.integrations.mmseg.cli import trusted_checkpoint_loading
from helpers import load_tool
from mmseg_helpers import CONFIGS, TINY_BACKBONE, tiny_config

pytestmark = pytest.mark.slow

PROBE = CONFIGS / "linear_probe" / "anyup_vit-s14-dinov2_linear-probe_ade20k-151_448x448.py"
FROZEN = ("backbone.", "neck.upsampler.")


def load(path) -> dict:
    with trusted_checkpoint_loading(str(path)):
        return torch.load(path, map_location="cpu")


@pytest.fixture(scope="module")
def run(synthetic_root, tmp_path_factory):
    """(root, config file, work dir) of a 2-epoch train.py run with a checkpoint per epoch."""
    root = tmp_path_factory.mktemp("lean")
    torch.manual_seed(0)
    tiny_vit = {k: v for k, v in TINY_BACKBONE.items() if k != "pretrained"}
    torch.save(TimmViT(**tiny_vit).model.state_dict(), root / "vit.pth")
    torch.save(build_upsampler("anyup", qk_dim=16).state_dict(), root / "anyup.pth")
    cfg = tiny_config(PROBE, synthetic_root, root / "work", "anyup", epochs=2)
    cfg.merge_from_dict({"model.backbone.pretrained": str(root / "vit.pth"),
                         "model.neck.pretrained": str(root / "anyup.pth"),
                         "default_hooks.checkpoint.interval": 1, "randomness": dict(seed=0)})
    for transform in cfg.train_dataloader.dataset.pipeline:
        if transform["type"] == "RandomFlip":
            transform["prob"] = 0.0  # its random state is not part of a checkpoint: off, so resuming is exact
    cfg.dump(str(root / "config.py"))
    load_tool("train").main([str(root / "config.py"), "--work-dir", str(root / "work")])
    return root, root / "config.py", root / "work"


def test_lean_checkpoint_holds_only_what_was_trained(run):
    root, _, work = run
    checkpoint = load(work / "epoch_2.pth")
    assert checkpoint["meta"]["lean_checkpoint"] == {
        "backbone": f"file {str(root / 'vit.pth')!r}",
        "neck.upsampler": f"anyup pretrained={str(root / 'anyup.pth')!r}"}
    kept = set(checkpoint["state_dict"])
    assert kept and not any(k.startswith(FROZEN) for k in kept)
    assert {"decode_head.conv_seg.weight", "decode_head.conv_seg.bias"} <= kept


def restored_full_checkpoint(run, path):
    """The lean checkpoint at ``path`` with the left-out weights put back (a full checkpoint)."""
    _, config, _ = run
    checkpoint = load(path)
    init_default_scope("mmseg")
    model = MODELS.build(Config.fromfile(str(config)).model)
    full = model.state_dict()
    full.update(checkpoint["state_dict"])
    checkpoint["state_dict"] = full
    del checkpoint["meta"]["lean_checkpoint"]
    return checkpoint


def test_test_tool_gives_the_metrics_of_the_full_checkpoint(run):
    root, config, work = run
    full = restored_full_checkpoint(run, work / "epoch_2.pth")
    torch.save(full, root / "full.pth")
    lean_size, full_size = (work / "epoch_2.pth").stat().st_size, (root / "full.pth").stat().st_size
    assert full_size > 2 * lean_size  # (>10x at real sizes: see docs/mmseg.md)
    test_tool = load_tool("test")
    lean_metrics = test_tool.main([str(config), str(work / "epoch_2.pth"), "--work-dir", str(root / "t_lean")])
    full_metrics = test_tool.main([str(config), str(root / "full.pth"), "--work-dir", str(root / "t_full")])
    assert lean_metrics == full_metrics and "mIoU" in lean_metrics


def test_resume_from_a_lean_checkpoint_continues_exactly(run):
    """Resuming epoch 2 from the lean epoch-1 checkpoint gives the head of the straight run."""
    root, config, work = run
    resumed = root / "resumed"
    resumed.mkdir()
    shutil.copy(work / "epoch_1.pth", resumed / "epoch_1.pth")
    (resumed / "last_checkpoint").write_text(str(resumed / "epoch_1.pth"))
    runner = load_tool("train").main([str(config), "--work-dir", str(resumed), "--resume"])
    assert runner.epoch == 2
    straight = load(work / "epoch_2.pth")["state_dict"]
    again = load(resumed / "epoch_2.pth")["state_dict"]
    assert straight.keys() == again.keys()
    for key in straight:
        torch.testing.assert_close(again[key], straight[key], rtol=0, atol=1e-6)


def test_loading_into_a_model_built_otherwise_is_refused(run, tmp_path):
    root, config, work = run
    with pytest.raises(ValueError, match=r"leaves out the frozen backbone weights .* built from no released weights: "
                                         r"set model\.backbone\.pretrained"):
        load_tool("test").main([str(config), str(work / "epoch_2.pth"), "--work-dir", str(tmp_path),
                                "--cfg-options", "model.backbone.pretrained=None"])
