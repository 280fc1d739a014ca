"""FeatUp JBU recipe: jitter geometry, the learned downsampler, a fixed-seed run lowers the
loss, the checkpoint loads with ``build_upsampler("featup_jbu", dim=C, pretrained=path)``, and
resuming is bit-identical."""
import pytest
import torch

from anyup_dense import build_upsampler
from anyup_dense.training.downsamplers import FeatUpDownsampler
from anyup_dense.training.geometry import featup_jitter, warp
from anyup_dense.training.losses import scaled_reconstruction_nll
from training_helpers import (TINY_BACKBONE_KWARGS, _one_thread, assert_loss_decreases,  # noqa: F401
                                   assert_resume_bit_identical, image_folder)

SMALL = dict(image_size=32, crf_samples=100)


def test_jitter_without_zoom_or_pad_is_identity_or_flip():
    generator = torch.Generator().manual_seed(0)
    m = featup_jitter(64, (16, 16), generator, max_pad=0, max_zoom=1.0)
    x = torch.randn(64, 2, 16, 16)
    warped = warp(x, m.float())
    flipped = m[:, 0, 0] < 0
    assert 0 < flipped.sum() < 64
    torch.testing.assert_close(warped[~flipped], x[~flipped], atol=1e-5, rtol=0)
    torch.testing.assert_close(warped[flipped], x[flipped].flip(-1), atol=1e-5, rtol=0)


def test_jitter_zoom_and_shift_stay_in_the_padded_range():
    generator = torch.Generator().manual_seed(1)
    m = featup_jitter(256, (224, 224), generator, max_pad=20, max_zoom=2.0)
    scale = m[:, 1, 1]
    assert scale.min() >= 0.5 and (scale == 1).any() and (scale < 1).any()
    # the sampled source rows span [-1 - 2*20/224, 1 + 2*20/224] at most
    lowest, highest = m[:, 1, 2] - scale, m[:, 1, 2] + scale
    assert lowest.min() >= -1 - 40 / 224 - 1e-9 and highest.max() <= 1 + 40 / 224 + 1e-9


def test_downsampler_of_constant_map_is_that_constant():
    down = FeatUpDownsampler(dim=3, kernel=8, final_size=4).eval()
    values = torch.tensor([1.5, -2.0, 0.25]).view(1, 3, 1, 1).expand(2, 3, 32, 32)
    torch.testing.assert_close(down(values), values[:, :, :4, :4])


def test_scaled_reconstruction_nll_formula():
    pred, target = torch.tensor([[[[1.0, 2.0]]]]), torch.tensor([[[[0.0, 0.0]]]])
    scale = torch.tensor([[[[2.0, 0.5]]]])
    expected = ((1 / 8 + torch.log(torch.tensor(2.0))) + (4 / 0.5 + torch.log(torch.tensor(0.5)))) / 2
    torch.testing.assert_close(scaled_reconstruction_nll(pred, target, scale), expected)


@pytest.mark.slow
def test_featup_loss_decreases(image_folder, tmp_path):
    assert_loss_decreases("featup_jbu", image_folder, tmp_path, steps=30, margin=0.2, **SMALL)


@pytest.mark.slow
def test_featup_resume_is_bit_identical_and_checkpoint_loads(image_folder, tmp_path):
    path = assert_resume_bit_identical("featup_jbu", image_folder, tmp_path, steps=4, **SMALL)
    dim = TINY_BACKBONE_KWARGS["embed_dim"]
    model = build_upsampler("featup_jbu", dim=dim, pretrained=path)
    stored = torch.load(path, weights_only=True)
    assert torch.equal(model.state_dict()["levels.0.range_temp"], stored["levels.0.range_temp"])
    assert stored["levels.0.range_temp"].item() != 0.0  # trained away from its init
    assert torch.equal(stored["channel_norm.weight"], torch.ones(dim))  # ChannelNorm stays frozen
    out = model(torch.randn(1, dim, 4, 4), torch.randn(1, 3, 32, 32))
    assert out.shape == (1, dim, 32, 32) and torch.isfinite(out).all()
