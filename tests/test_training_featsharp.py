"""FeatSharp recipe: PHI-S statistics, Hadamard matrices, the seam loss grid, a fixed-seed
run lowers the loss, the checkpoint loads with ``build_upsampler("featsharp", ...)``, and
resuming is bit-identical."""
import pytest
import torch

from anyup_dense import build_upsampler
from anyup_dense.training.distributed import DistInfo
from anyup_dense.training.phis import estimate_phis, hadamard
from anyup_dense.training.recipes.featsharp import seam_grid
from anyup_dense.upsamplers.featsharp import PhiSNormalizer
from training_helpers import (TINY_BACKBONE_KWARGS, _one_thread, assert_loss_decreases,  # noqa: F401
                                   assert_resume_bit_identical, image_folder)

SMALL = dict(model_resolution=32, phis_batches=3)
CPU = DistInfo(0, 1, torch.device("cpu"))


@pytest.mark.parametrize("n", [1, 2, 12, 20, 36, 384, 1024, 1152])
def test_hadamard_rows_are_orthogonal(n):
    h = hadamard(n)
    assert torch.equal(h.abs(), torch.ones(n, n, dtype=torch.float64))
    assert torch.equal(h @ h.T, n * torch.eye(n, dtype=torch.float64))


def test_hadamard_rejects_impossible_orders():
    with pytest.raises(ValueError, match="dimension 6"):
        hadamard(6)


def test_phis_statistics_give_unit_variance_and_decorrelate_after_rotating_back():
    generator = torch.Generator().manual_seed(0)
    dim = 12
    mixing = torch.randn(dim, dim, generator=generator, dtype=torch.float64) * torch.linspace(0.1, 3, dim,
                                                                                         dtype=torch.float64)
    batches = [(torch.randn(4, 5, 5, dim, generator=generator, dtype=torch.float64) @ mixing + 2.0).permute(0, 3, 1, 2)
               for _ in range(6)]
    stats = estimate_phis(batches, dim, CPU)
    x = torch.cat([b.permute(0, 2, 3, 1).reshape(-1, dim) for b in batches])
    y = stats["alpha"] * (x - stats["mean"]) @ stats["rotation"].T
    cov_y = torch.cov(y.T, correction=0)
    torch.testing.assert_close(y.mean(0), torch.zeros(dim, dtype=torch.float64), atol=1e-10, rtol=0)
    torch.testing.assert_close(cov_y.diagonal(), torch.ones(dim, dtype=torch.float64), atol=1e-10, rtol=0)
    assert cov_y.triu(1).abs().max() > 0.05  # PHI-S rotates, it does not whiten
    eigen = torch.linalg.eigvalsh(torch.cov(x.T, correction=0))
    torch.testing.assert_close(stats["alpha"], 1 / eigen.mean().sqrt())
    back = y @ (hadamard(dim) / dim ** 0.5) / stats["alpha"]  # = V^T (x - mean)
    cov_back = torch.cov(back.T, correction=0)
    torch.testing.assert_close(cov_back, torch.diag(cov_back.diagonal()), atol=1e-9, rtol=0)
    torch.testing.assert_close(cov_back.diagonal().sort().values, eigen, atol=1e-9, rtol=0)
    normalizer = PhiSNormalizer(dim).double()
    for name, value in stats.items():
        getattr(normalizer, name).copy_(value)
    torch.testing.assert_close(normalizer.denormalize(normalizer(batches[0])), batches[0])


def test_seam_grid_weights_two_pixel_bands_and_has_mean_one():
    grid = seam_grid(factor=2, tile=4, weight=2.0)[0, 0]
    assert grid.mean().item() == pytest.approx(1.0)
    assert grid[0, 0] < grid[3, 0] == grid[4, 0] == grid[0, 3] == grid[0, 4]
    assert grid[3, 0] == pytest.approx(2 * grid[0, 0].item())


@pytest.mark.slow
def test_featsharp_loss_decreases(image_folder, tmp_path):
    assert_loss_decreases("featsharp", image_folder, tmp_path, steps=30, margin=0.2, lr=2e-3, warmup_steps=0,
                          cosine_decay=False, **SMALL)


@pytest.mark.slow
def test_featsharp_resume_is_bit_identical_and_checkpoint_loads(image_folder, tmp_path):
    path = assert_resume_bit_identical("featsharp", image_folder, tmp_path, steps=4, **SMALL)
    dim, patch = TINY_BACKBONE_KWARGS["embed_dim"], TINY_BACKBONE_KWARGS["patch_size"]
    model = build_upsampler("featsharp", dim=dim, upsample_factor=2, model_resolution=32, patch_size=patch,
                            pretrained=path)
    stored = torch.load(path, weights_only=True)
    assert torch.equal(model.state_dict()["normalizer.rotation"], stored["normalizer.rotation"])
    assert not torch.equal(stored["normalizer.rotation"], torch.eye(dim))  # PHI-S was estimated
    assert stored["bias_buffer"].abs().max() > 0  # the de-bias buffer was trained
    out = model(torch.randn(1, dim, 4, 4), torch.randn(1, 3, 64, 64), output_size=8,
                tile_features=torch.randn(1, dim, 8, 8))
    assert out.shape == (1, dim, 8, 8) and torch.isfinite(out).all()
