"""FeatUp JBU stack: checkpoints, interface (parity with the official code: tests/test_parity.py)."""
import pytest
import torch
import torch.nn.functional as F

from anyup_dense import build_upsampler
from anyup_dense.checkpoints import CheckpointMismatchError
from anyup_dense.upsamplers.featup_jbu import FeatUpJBU
from helpers import load_fixture, relative_errors

def test_output_size_resamples_the_16x_map():
    model = FeatUpJBU(6, use_norm=False).eval()
    feats, image = torch.randn(1, 6, 2, 3), torch.randn(1, 3, 20, 30)
    with torch.no_grad():
        native = model(feats, image, output_size=(32, 48))
        default = model(feats, image)
        other = model(feats, image, output_size=17)
    assert native.shape == (1, 6, 32, 48)
    assert torch.equal(native, model.upsample_native(feats, image))
    assert torch.allclose(default, F.interpolate(native, size=(20, 30), mode="bilinear", align_corners=False))
    assert other.shape == (1, 6, 17, 17)


def test_parameter_count_matches_official():
    """4 x 6,233 + 147,840 = 172,772 for C = 384 (spec section 2.1); ChannelNorm adds 2C."""
    assert sum(p.numel() for p in FeatUpJBU(384, use_norm=False).parameters()) == 172_772
    assert sum(p.numel() for p in FeatUpJBU(384, use_norm=True).parameters()) == 172_772 + 768


def test_wrong_channel_count_is_rejected():
    model = build_upsampler("featup_jbu", backbone="dinov2")
    with pytest.raises(ValueError, match="features have 383 channels but this upsampler's weights expect 384"):
        model(torch.randn(1, 383, 4, 4), torch.randn(1, 3, 56, 56))


def test_builder_argument_errors():
    with pytest.raises(ValueError, match="needs backbone= .* or dim="):
        build_upsampler("featup_jbu")
    with pytest.raises(ValueError, match="backbone must be one of"):
        build_upsampler("featup_jbu", backbone="dinov3")
    with pytest.raises(ValueError, match="'maskclip' has only a use_norm=False checkpoint"):
        build_upsampler("featup_jbu", backbone="maskclip")
    with pytest.raises(ValueError, match="dim=256 contradicts backbone 'clip'"):
        build_upsampler("featup_jbu", backbone="clip", dim=256)
    with pytest.raises(ValueError, match="pretrained=True needs backbone="):
        build_upsampler("featup_jbu", dim=8, pretrained=True)


def _official_checkpoint(case: dict) -> dict:
    """FeatUp's on-disk layout: a Lightning checkpoint whose state_dict holds the hub model's keys
    (backbone under model.0 / model, ChannelNorm model.1.norm, JBU under upsampler.) plus the
    training-only downsampler and scale_net."""
    backbone_prefix = "model.0.model." if case["config"]["use_norm"] else "model.model."
    state = dict(case["state_dict"])
    state[backbone_prefix + "cls_token"] = torch.zeros(1, 1, 8)
    state[backbone_prefix + "blocks.0.norm1.weight"] = torch.ones(8)
    state["downsampler.w"] = torch.zeros(14, 14)
    state["downsampler.attention_net.1.weight"] = torch.zeros(1, case["config"]["dim"])
    state["scale_net.net.weight"] = torch.zeros(1, case["config"]["dim"], 1, 1)
    return {"epoch": 0, "global_step": 1000, "pytorch-lightning_version": "1.9.0", "state_dict": state}


@pytest.mark.parametrize("name", ["featup_jbu_norm_d32_h2.pt", "featup_jbu_d7_up.pt"])
def test_official_checkpoint_reproduces_the_fixture(tmp_path, name):
    """FeatUp's Lightning file, with and without ChannelNorm: the backbone and training-only parts
    are dropped, the JBU keys renamed, and the model reproduces the fixture (every release through
    torch.hub's cache, pretrained=True with backbone=: tests/test_releases.py)."""
    case = load_fixture(name)
    path = tmp_path / "official.ckpt"
    torch.save(_official_checkpoint(case), path)
    model = build_upsampler("featup_jbu", dim=case["config"]["dim"], use_norm=case["config"]["use_norm"],
                            pretrained=str(path))
    assert torch.equal(model.levels[3].range_temp, case["state_dict"]["upsampler.up4.range_temp"])
    inputs = case["inputs"]
    with torch.no_grad():
        out = model.double()(inputs["features"], inputs["image"], output_size=tuple(case["output"].shape[-2:]))
    assert relative_errors(out, case["output"])[0] <= 1e-9


def test_mismatched_checkpoint_lists_the_keys(tmp_path):
    case = load_fixture("featup_jbu_norm_d32_h2.pt")
    checkpoint = _official_checkpoint(case)
    del checkpoint["state_dict"]["upsampler.up2.sigma_spatial"]
    checkpoint["state_dict"]["upsampler.up5.range_temp"] = torch.tensor(0.0)
    checkpoint["state_dict"]["upsampler.extra"] = torch.tensor(0.0)
    path = tmp_path / "bad.ckpt"
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointMismatchError) as error:
        build_upsampler("featup_jbu", dim=32, pretrained=str(path))
    message = str(error.value)
    assert "missing keys (1): levels.1.sigma_spatial" in message
    assert "unexpected keys (2): levels.4.range_temp, upsampler.extra" in message
    # A use_norm checkpoint into a use_norm=False model: the ChannelNorm keys are unexpected.
    torch.save(_official_checkpoint(case), path)
    with pytest.raises(CheckpointMismatchError, match=r"unexpected keys \(2\): channel_norm.bias, channel_norm.weight"):
        build_upsampler("featup_jbu", dim=32, use_norm=False, pretrained=str(path))
    mismatch = r"shape mismatches \(4\): channel_norm.bias: checkpoint \(32,\) vs model \(16,\)"
    with pytest.raises(CheckpointMismatchError, match=mismatch):
        build_upsampler("featup_jbu", dim=16, pretrained=str(path))


def test_training_gradients_reach_every_parameter():
    model = FeatUpJBU(4, use_norm=True).train()
    out = model(torch.randn(1, 4, 2, 2), torch.randn(1, 3, 32, 32))
    out.square().mean().backward()
    no_grad = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not no_grad, no_grad
