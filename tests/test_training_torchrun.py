"""``tools/train_upsampler.py`` under ``torchrun --nproc_per_node 2`` (gloo on CPU)."""
import os
import pathlib
import subprocess
import sys

import pytest
import torch

from anyup_dense import build_upsampler
from anyup_dense.training.checkpointing import load_checkpoint
from training_helpers import TINY_BACKBONE, TINY_BACKBONE_KWARGS, image_folder  # noqa: F401

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_two_process_gloo_run_writes_one_checkpoint(image_folder, tmp_path):
    import json

    torchrun = pathlib.Path(sys.executable).with_name("torchrun")
    out_dir = tmp_path / "ddp"
    command = [str(torchrun), "--standalone", "--nproc_per_node", "2", str(REPO / "tools" / "train_upsampler.py"),
               "--recipe", "anyup", "--backbone", TINY_BACKBONE, "--backbone-weights", "random",
               "--backbone-kwargs", json.dumps(TINY_BACKBONE_KWARGS), "--data", str(image_folder),
               "--out-dir", str(out_dir), "--max-steps", "3", "--ckpt-every", "100", "--batch-size", "1",
               "--crop-size", "32", "--crops-per-image", "2", "--min-image-side", "0", "--num-workers", "0",
               "--upsampler-kwargs", '{"qk_dim": 32}', "--device", "cpu"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=170)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert sorted(p.name for p in out_dir.glob("*.pth")) == ["step_0000003.pth", "step_0000003.state.pth"]
    _, state = load_checkpoint(str(out_dir / "step_0000003.pth"))
    assert state["world_size"] == 2 and state["step"] == 3
    assert state["config"]["upsampler_kwargs"] == {"qk_dim": 32} and state["config"]["lr"] == 2e-4
    model = build_upsampler("anyup", pretrained=str(out_dir / "step_0000003.pth"), qk_dim=32)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert (out_dir / "tensorboard").is_dir() and any((out_dir / "tensorboard").iterdir())
