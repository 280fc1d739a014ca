"""tools/train.py --offline: the offline variables are set for the process, and building a model
whose timm ViT weights are not in the (empty) cache fails at once, without a network request,
naming the config's pretrained keys."""
import os
import time

import huggingface_hub.constants
from huggingface_hub.errors import OfflineModeIsEnabled
import pytest

from helpers import ROOT, load_tool

CONFIG = ROOT / "configs/mmseg/linear_probe/anyup_vit-s14-dinov2_linear-probe_ade20k-151_448x448.py"
TINY = ["model.backbone.model_name=vit_small_patch14_dinov2", "model.backbone.img_size=56",
        "model.backbone.depth=1", "model.backbone.embed_dim=32", "model.backbone.num_heads=2",
        "model.decode_head.in_channels=32", "model.neck.pretrained=None"]


@pytest.fixture
def offline_env(monkeypatch, tmp_path):
    """Restores the variables and huggingface_hub's constants after the test; an empty HF cache."""
    tool = load_tool("train")
    for key in tool.OFFLINE_ENV:
        monkeypatch.setenv(key, "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    return tool


def test_offline_sets_the_variables(offline_env):
    assert offline_env.parse_args([str(CONFIG), "--offline"]).offline
    offline_env.go_offline()
    assert {key: os.environ[key] for key in offline_env.OFFLINE_ENV} == {
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    assert huggingface_hub.constants.HF_HUB_OFFLINE is True


@pytest.mark.slow
def test_offline_uncached_vit_fails_fast_naming_the_key(offline_env, tmp_path):
    start = time.monotonic()
    with pytest.raises(OSError, match=r"--offline: .*not in the local cache.*model\.backbone\.pretrained=True") as info:
        offline_env.main([str(CONFIG), "--offline", "--work-dir", str(tmp_path / "work"), "--cfg-options", *TINY])
    assert time.monotonic() - start < 10  # no network wait: about 2 s, all of it building the runner
    causes, error = [], info.value
    while error is not None:
        causes.append(type(error))
        error = error.__cause__
    assert OfflineModeIsEnabled in causes  # refused by huggingface_hub before any request


def test_pretrained_keys():
    model = {"backbone": {"pretrained": True}, "neck": {"pretrained": None, "x": [{"pretrained": "a.pth"}]}}
    assert load_tool("train").pretrained_keys(model) == ["model.backbone.pretrained=True",
                                                         "model.neck.x.0.pretrained='a.pth'"]
