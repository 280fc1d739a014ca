"""AnyUp recipe: loss terms against a float64 hand computation, a fixed-seed run lowers the
loss, the checkpoint loads with ``build_upsampler("anyup", pretrained=path)``, and resuming
is bit-identical."""
import numpy as np
import pytest
import torch

from anyup_dense import build_upsampler
from anyup_dense.training.losses import cosine_mse, cosine_term, minmax_mse_term
from anyup_dense.training.recipes.anyup import anyup_objective, cut_crops
from training_helpers import (_one_thread, assert_loss_decreases, assert_resume_bit_identical,  # noqa: F401
                                   image_folder)


def hand_cosine_mse(pred: np.ndarray, target: np.ndarray):
    """Independent float64 Cosine_MSE on [B, C, H, W] arrays: (cosine term, min-max MSE term)."""
    p = pred.transpose(0, 2, 3, 1).reshape(-1, pred.shape[1])
    t = target.transpose(0, 2, 3, 1).reshape(-1, target.shape[1])
    cos = [1 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) for a, b in zip(p, t)]
    sq = []
    for a, b in zip(p, t):
        lo, hi = b.min(), b.max()
        sq.extend((((a - lo) / (hi - lo + 1e-6)) - ((b - lo) / (hi - lo + 1e-6))) ** 2)
    return float(np.mean(cos)), float(np.mean(sq))


def test_cosine_mse_terms_match_hand_computation():
    rng = np.random.default_rng(1)
    pred, target = rng.normal(size=(2, 5, 3, 4)), rng.normal(size=(2, 5, 3, 4))
    cos, mse = hand_cosine_mse(pred, target)
    p, t = torch.from_numpy(pred), torch.from_numpy(target)
    assert cosine_term(p, t).item() == pytest.approx(cos, rel=1e-12)
    assert minmax_mse_term(p, t).item() == pytest.approx(mse, rel=1e-12)
    assert cosine_mse(p, t).item() == pytest.approx(cos + mse, rel=1e-12)
    assert cos > 0.1 and mse > 0.1  # neither term is trivially zero on this example


def test_anyup_objective_matches_hand_computation():
    rng = np.random.default_rng(2)
    b, c, g, per_image = 2, 6, 4, 3
    pred = rng.normal(size=(b, c, 2 * g, 2 * g))
    targets = rng.normal(size=(b * per_image, c, g, g))
    offsets = rng.integers(0, g + 1, size=(b * per_image, 2))
    lr = rng.normal(size=(b, c, g, g))
    aug, clean = rng.normal(size=(b, c, 10, 10)), rng.normal(size=(b, c, 10, 10))
    terms = anyup_objective(*(torch.from_numpy(x) for x in (pred, targets, offsets, lr, aug, clean)),
                            augmentation_weight=0.1, downsampling_weight=0.1)

    windows = np.stack([pred[i // per_image, :, top:top + g, left:left + g] for i, (top, left) in enumerate(offsets)])
    main = sum(hand_cosine_mse(windows, targets))
    aug_term = 0.1 * sum(hand_cosine_mse(aug, clean))
    area = pred.reshape(b, c, g, 2, g, 2).mean(axis=(3, 5))
    down = 0.1 * sum(hand_cosine_mse(area, lr))
    assert terms["main"].item() == pytest.approx(main, rel=1e-12)
    assert terms["aug"].item() == pytest.approx(aug_term, rel=1e-12)
    assert terms["down"].item() == pytest.approx(down, rel=1e-12)
    assert terms["loss"].item() == pytest.approx(main + aug_term + down, rel=1e-12)


def test_cut_crops_takes_patch_aligned_windows():
    images = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6)
    offsets = torch.tensor([[0, 1], [1, 0], [1, 1], [0, 0]])
    crops = cut_crops(images, offsets, crop=4, unit=2)
    assert crops.shape == (4, 1, 4, 4)
    assert torch.equal(crops[1], images[0, :, 2:6, 0:4])
    assert torch.equal(crops[2], images[1, :, 2:6, 2:6])


@pytest.mark.slow
def test_anyup_loss_decreases(image_folder, tmp_path):
    """The recipe's default precision, bf16 autocast, on CPU (forward and backward)."""
    assert_loss_decreases("anyup", image_folder, tmp_path, steps=40, margin=0.05, crop_size=32, crops_per_image=2,
                          lr=1e-3, upsampler_kwargs={"qk_dim": 32})


@pytest.mark.slow
def test_anyup_resume_is_bit_identical_and_loads_as_plain_state_dict(image_folder, tmp_path):
    path = assert_resume_bit_identical("anyup", image_folder, tmp_path, steps=4, crop_size=32, crops_per_image=2,
                                       upsampler_kwargs={"qk_dim": 32})
    stored = torch.load(path, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in stored.values())  # a plain state_dict
    model = build_upsampler("anyup", pretrained=path, qk_dim=32)
    assert torch.equal(model.state_dict()["rope.freqs"], stored["rope.freqs"])
    fresh = build_upsampler("anyup", qk_dim=32)
    assert not torch.equal(fresh.state_dict()["aggregation.0.weight"], stored["aggregation.0.weight"])
    out = model(torch.randn(1, 32, 4, 4), torch.randn(1, 3, 32, 32), output_size=8)
    assert out.shape == (1, 32, 8, 8) and torch.isfinite(out).all()
