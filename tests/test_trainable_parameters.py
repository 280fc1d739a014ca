"""Every trainable parameter of every upsampler receives a gradient, so ``frozen=False``
trains under DistributedDataParallel's default ``find_unused_parameters=False``; weights
the official model stores but never uses are buffers (still in the state_dict)."""
import pytest
import torch

from anyup_dense import build_upsampler
from anyup_dense.upsamplers.anyup import AnyUp

SMALL = {
    "anyup": dict(qk_dim=16, num_heads=2),
    "featup_jbu": dict(dim=6),
    "featsharp": dict(dim=8, upsample_factor=2, model_resolution=12, patch_size=4, num_heads=2),
}


def _inputs(name):
    features, image = torch.randn(2, 8 if name == "featsharp" else 6, 3, 3), torch.randn(2, 3, 12, 12)
    extra = {"tile_features": torch.randn(2, 8, 6, 6)} if name == "featsharp" else {}
    return features, image, extra


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_trainable_parameter_gets_a_gradient(name):
    model = build_upsampler(name, **SMALL[name]).train()
    features, image, extra = _inputs(name)
    model(features, image, (12, 12), **extra).square().sum().backward()
    without = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not without, without
    assert all(p.grad.abs().sum() > 0 for p in model.parameters())


def test_anyup_unused_projection_is_a_buffer_in_the_official_state_dict():
    model = AnyUp()
    unused = {"cross_decode.cross_attn.attention.out_proj.weight", "cross_decode.cross_attn.attention.out_proj.bias"}
    assert unused <= set(model.state_dict()) and unused <= set(dict(model.named_buffers()))
    assert not unused & set(dict(model.named_parameters()))
