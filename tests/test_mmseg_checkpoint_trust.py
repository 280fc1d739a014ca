"""tools/train.py and tools/test.py load mmengine checkpoints with ``weights_only`` loading plus
a scoped allow-list (``cli.trusted_checkpoint_globals``), never process-wide unsafe loading.

A real tiny training run writes the checkpoint; test.py evaluates it and train.py resumes from
it with ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` unset. Checkpoints whose pickle would run a payload
are refused before the payload runs.
"""
import os
import shlex

import numpy as np
import pytest
import torch
from mmengine.runner import CheckpointLoader

from anyup_dense.integrations.mmseg.cli import UntrustedCheckpointError, trusted_checkpoint_loading
from helpers import load_tool
from mmseg_helpers import CONFIGS, tiny_config

pytestmark = pytest.mark.slow

UNSAFE_ENV = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
CONFIG = CONFIGS / "linear_probe" / "bilinear_vit-s14-dinov2_linear-probe_ade20k-151_448x448.py"


class ShellPayload:
    """Unpickles as ``os.system("touch MARKER")`` (a module torch blocks outright)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


class GetattrPayload:
    """Unpickles as ``getattr(np.ndarray, "tofile")(array, MARKER)``, built from allowed globals
    only (``np.ndarray``, ``getattr``): the allow-listed ``getattr`` hands out nothing but
    HistoryBuffer's statistics methods, so it is refused at the ``getattr``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return np.ndarray.tofile, (np.zeros(1), str(self.marker))


@pytest.fixture(scope="module")
def trained(synthetic_root, tmp_path_factory):
    """(config file, work dir, trained runner) of a 1-epoch train.py run, the unsafe env var unset."""
    assert UNSAFE_ENV not in os.environ
    root = tmp_path_factory.mktemp("trust")
    config_file = root / "tiny.py"
    tiny_config(CONFIG, synthetic_root, root / "train", "bilinear", epochs=1).dump(str(config_file))
    runner = load_tool("train").main([str(config_file), "--work-dir", str(root / "train")])
    assert UNSAFE_ENV not in os.environ
    return config_file, root / "train", runner


def with_payload(checkpoint, payload, path):
    """A copy of the real checkpoint at ``path`` with ``payload`` added to its meta."""
    with trusted_checkpoint_loading(str(checkpoint)):
        state = torch.load(checkpoint, weights_only=True)
    state["meta"]["note"] = payload
    torch.save(state, path)
    return path


def test_test_tool_evaluates_the_trained_checkpoint(trained, tmp_path):
    config_file, work_dir, runner = trained
    trained_metrics = runner.val_loop.run()
    metrics = load_tool("test").main([str(config_file), str(work_dir / "epoch_1.pth"), "--work-dir", str(tmp_path)])
    assert metrics == pytest.approx(trained_metrics)  # the file holds the trained weights
    assert UNSAFE_ENV not in os.environ


def test_resume_restores_the_training_state(trained, tmp_path):
    """--resume loads the optimizer, schedulers and message hub (numpy arrays, HistoryBuffer)."""
    config_file, work_dir, _ = trained
    resume_dir = tmp_path / "resume"
    resume_dir.mkdir()
    (resume_dir / "epoch_1.pth").write_bytes((work_dir / "epoch_1.pth").read_bytes())
    (resume_dir / "last_checkpoint").write_text(str(resume_dir / "epoch_1.pth"))
    runner = load_tool("train").main([str(config_file), "--work-dir", str(resume_dir), "--resume",
                                      "--cfg-options", "train_cfg.max_epochs=2"])
    assert UNSAFE_ENV not in os.environ
    assert runner.iter == 4  # 2 resumed + 2 new iterations (4 images, batch 2)
    steps = {float(s["step"]) for s in runner.optim_wrapper.optimizer.state.values()}
    assert steps == {4.0}  # AdamW's step counts went on from the checkpoint's 2, not from 0
    history = runner.message_hub.get_scalar("train/loss")
    assert len(history.data[0]) == 4  # the resumed HistoryBuffer plus 2 new values


@pytest.mark.parametrize("payload, refusal", [
    (ShellPayload, f"Trying to load unsupported GLOBAL {os.system.__module__}.system"),
    (GetattrPayload, "refusing getattr(<class 'numpy.ndarray'>, 'tofile')"),
])
def test_checkpoint_with_payload_is_refused(trained, tmp_path, payload, refusal):
    _, work_dir, _ = trained
    marker = tmp_path / "payload_ran"
    evil = with_payload(work_dir / "epoch_1.pth", payload(marker), tmp_path / "evil.pth")
    with pytest.raises(UntrustedCheckpointError) as info:
        with trusted_checkpoint_loading(str(evil)):
            CheckpointLoader.load_checkpoint(str(evil), map_location="cpu")
    assert str(info.value).startswith(f"refusing to load the checkpoint {evil}: it holds more than an mmengine "
                                      f"checkpoint does")
    assert refusal in str(info.value)
    assert not marker.exists()
    torch.load(evil, weights_only=False)  # control: the payload is live when loading is unrestricted
    assert marker.exists()


def test_test_tool_refuses_payload(trained, tmp_path):
    config_file, work_dir, _ = trained
    marker = tmp_path / "payload_ran"
    evil = with_payload(work_dir / "epoch_1.pth", ShellPayload(marker), tmp_path / "evil.pth")
    with pytest.raises(UntrustedCheckpointError, match=f"refusing to load the checkpoint {evil}"):
        load_tool("test").main([str(config_file), str(evil), "--work-dir", str(tmp_path / "test")])
    assert not marker.exists()
    assert UNSAFE_ENV not in os.environ
