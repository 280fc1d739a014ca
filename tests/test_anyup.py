"""AnyUp: checkpoint loading, attention internals (parity with the official code: tests/test_parity.py)."""
import dataclasses

import pytest
import torch

from anyup_dense import build_upsampler
from anyup_dense.upsamplers.anyup import RELEASES, AnyUp
from helpers import load_fixture, relative_errors


def test_released_architecture_keys():
    """The default constructor has exactly the official 73 tensors / 878,080 values; the
    unused out_proj (128*128 + 128) is held as buffers, not trainable parameters."""
    model = AnyUp()
    state = model.state_dict()
    assert len(state) == 73
    assert sum(v.numel() for v in state.values()) == 878_080
    assert sum(p.numel() for p in model.parameters()) == 878_080 - 128 * 128 - 128
    released = load_fixture("anyup_released_c100_down.pt")["state_dict"]
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: tuple(v.shape) for k, v in released.items()}


@pytest.mark.slow
def test_output_is_convex_combination_of_features():
    """Each output pixel is a convex combination of input feature vectors: linear in the values."""
    model = AnyUp(qk_dim=16, num_heads=2).eval()
    feats = torch.randn(1, 5, 4, 6)
    image = torch.randn(1, 3, 28, 42)
    with torch.no_grad():
        out = model(feats, image)
        shifted = model(feats + 3.0, image)  # keys use normalize(features): a shift changes them
        scaled = model(2.5 * feats, image)   # a global scale does not change the attention
    assert out.shape == (1, 5, 28, 42)
    assert torch.allclose(scaled, 2.5 * out, rtol=1e-4, atol=1e-5)
    assert out.amax(dim=(2, 3)).le(feats.amax(dim=(2, 3)) + 1e-5).all()
    assert out.amin(dim=(2, 3)).ge(feats.amin(dim=(2, 3)) - 1e-5).all()
    assert not torch.allclose(shifted, out + 3.0, atol=1e-3)


def test_load_from_local_path(tmp_path):
    case = load_fixture("anyup_released_c100_down.pt")
    path = tmp_path / "anyup_paper.pth"
    torch.save(case["state_dict"], path)  # the official layout: a flat state_dict
    model = build_upsampler("anyup", pretrained=str(path))
    assert not model.training
    feats, image = case["inputs"]["features"].float(), case["inputs"]["image"].float()
    with torch.no_grad():
        out = model(feats, image, output_size=case["config"]["output_size"])
    assert relative_errors(out, case["output"])[1] <= 1e-5


def test_unknown_pretrained_name():
    with pytest.raises(FileNotFoundError, match="neither a release name.*'anyup_paper'"):
        build_upsampler("anyup", pretrained="anyup_papr")


@pytest.mark.slow
def test_checkpointed_encoders_give_identical_gradients():
    """checkpoint_encoders recomputes the encoders in backward: same output, same gradients."""
    torch.manual_seed(1)
    plain = AnyUp(qk_dim=16, num_heads=2).double()
    checkpointed = AnyUp(qk_dim=16, num_heads=2, checkpoint_encoders=True).double()
    checkpointed.load_state_dict(plain.state_dict())
    feats = torch.randn(1, 6, 4, 5, dtype=torch.float64)
    image = torch.randn(1, 3, 24, 30, dtype=torch.float64)
    grads = []
    for model in (plain, checkpointed):
        f = feats.clone().requires_grad_()
        out = model(f, image, output_size=(20, 26))
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        grads.append([f.grad] + [p.grad for p in model.parameters()])
    assert all(g0 is None and g1 is None or torch.allclose(g0, g1, rtol=1e-12, atol=1e-14)
               for g0, g1 in zip(*grads))
    assert grads[1][-1] is not None and checkpointed.rope.freqs.grad.abs().sum() > 0


def test_wrong_guidance_channels():
    model = AnyUp(qk_dim=16, num_heads=2, input_dim=4)
    with pytest.raises(ValueError, match="image must have 4 channels"):
        model(torch.randn(1, 5, 4, 4), torch.randn(1, 3, 16, 16))


def test_unreachable_url_says_how_to_load_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    missing = (tmp_path / "nowhere" / "anyup_paper.pth").as_uri()
    monkeypatch.setitem(RELEASES, "anyup_paper", dataclasses.replace(RELEASES["anyup_paper"], url=missing))
    expected_cache = tmp_path / "torch_home" / "hub" / "checkpoints" / "anyup_paper.pth"
    with pytest.raises(OSError, match=f"could not download {missing}.*pass its path as pretrained=, or copy "
                                      f"it to {expected_cache}"):
        build_upsampler("anyup", pretrained="anyup_paper", progress=False)
