"""Shared training pieces: data order, augmentation determinism, schedules, config round
trips, checkpoint files."""
import pytest
import torch

from anyup_dense.training import get_recipe
from anyup_dense.training.augment import augment_batch
from anyup_dense.training.checkpointing import latest_checkpoint, save_checkpoint, state_path
from anyup_dense.training.config import config_from_dict, config_to_dict, parse_field
from anyup_dense.training.data import ImageFolder, StepBatchSampler
from anyup_dense.training.geometry import featsharp_jitter, homography_from_points, valid_mask, warp
from anyup_dense.training.loop import clip_norm_at, lr_factor
from training_helpers import image_folder  # noqa: F401


def test_sampler_covers_each_epoch_once_and_shards_ranks():
    full = StepBatchSampler(10, batch_size=2, seed=3, start_step=0, end_step=10)
    epoch = [i for step in range(5) for i in full.indices_for_step(step)]
    assert sorted(epoch) == list(range(10))
    ranks = [StepBatchSampler(10, 1, 3, 0, 10, rank=r, world_size=2) for r in (0, 1)]
    assert [i for step in range(5) for r in ranks for i in r.indices_for_step(step)] == epoch
    resumed = StepBatchSampler(10, 2, 3, start_step=3, end_step=10)
    assert list(resumed) == list(full)[3:]
    assert [full.indices_for_step(s) for s in range(5, 10)] != [full.indices_for_step(s) for s in range(5)]


def test_image_folder_loads_square_crops_and_filters_small_images(image_folder):
    dataset = ImageFolder(str(image_folder), size=48)
    assert len(dataset) == 6 and dataset[0].shape == (3, 48, 48)
    assert 0 <= dataset[0].min() and dataset[0].max() <= 1
    assert len(ImageFolder(str(image_folder), size=48, min_side=80)) == 2
    with pytest.raises(ValueError, match="shorter side"):
        ImageFolder(str(image_folder), size=48, min_side=1000)


def test_augmentations_are_a_function_of_the_generator():
    images = torch.rand(3, 3, 24, 24)
    a = augment_batch(images, torch.Generator().manual_seed(5))
    b = augment_batch(images, torch.Generator().manual_seed(5))
    c = augment_batch(images, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == images.shape and 0 <= a.min() and a.max() <= 1


def test_homography_maps_points_and_warp_validity():
    src = torch.tensor([[[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]], dtype=torch.float64)
    dst = src * 0.9 + 0.05
    m = homography_from_points(src, dst)
    mapped = torch.cat([src, torch.ones(1, 4, 1, dtype=torch.float64)], -1) @ m[0].T
    torch.testing.assert_close(mapped[..., :2] / mapped[..., 2:], dst)
    jitter = featsharp_jitter(8, torch.Generator().manual_seed(0))
    mask = valid_mask(jitter, (16, 16))
    assert 0.5 < mask.mean() <= 1.0
    assert warp(torch.randn(8, 2, 16, 16), jitter).shape == (8, 2, 16, 16)


def test_lr_schedule_and_clipping_follow_the_featsharp_recipe():
    config = get_recipe("featsharp").config_class()
    assert lr_factor(config, 0) == pytest.approx(0.1)
    assert lr_factor(config, 50) == pytest.approx(0.55)
    assert lr_factor(config, 100) == pytest.approx(1.0)
    assert lr_factor(config, config.max_steps) == pytest.approx(0.0, abs=1e-12)
    assert clip_norm_at(config, 9) == 1e-4 and clip_norm_at(config, 10) == 5.0
    anyup = get_recipe("anyup").config_class()
    assert lr_factor(anyup, 12345) == 1.0 and clip_norm_at(anyup, 0) == 0.0


def test_published_defaults_and_config_round_trip():
    anyup = get_recipe("anyup").config_class()
    assert (anyup.lr, anyup.weight_decay, anyup.optimizer, anyup.batch_size) == (2e-4, 1e-5, "adamw", 4)
    assert (anyup.augmentation_weight, anyup.downsampling_weight, anyup.crop_size) == (0.1, 0.1, 224)
    featup = get_recipe("featup_jbu").config_class()
    assert (featup.lr, featup.optimizer, featup.n_jitters, featup.projection_dim) == (1e-3, "nadam", 5, 30)
    values = config_to_dict(anyup)
    assert config_from_dict(type(anyup), values) == anyup
    with pytest.raises(ValueError, match="unknown"):
        config_from_dict(type(anyup), {"nope": 1})
    assert parse_field(type(anyup), "backbone_kwargs", '{"depth": 2}') == {"depth": 2}
    assert parse_field(type(anyup), "betas", "[0.8, 0.9]") == (0.8, 0.9)
    assert parse_field(type(anyup), "max_steps", "7") == 7


def test_latest_checkpoint_needs_both_files(tmp_path):
    assert latest_checkpoint(str(tmp_path)) is None
    first = save_checkpoint(str(tmp_path), 5, {"w": torch.ones(1)}, {"recipe": "anyup"})
    second = save_checkpoint(str(tmp_path), 10, {"w": torch.zeros(1)}, {"recipe": "anyup"})
    assert latest_checkpoint(str(tmp_path)) == second
    (tmp_path / "step_0000010.state.pth").unlink()
    assert latest_checkpoint(str(tmp_path)) == first and state_path(first).endswith("step_0000005.state.pth")
    assert torch.equal(torch.load(first, weights_only=True)["w"], torch.ones(1))


@pytest.mark.parametrize("recipe, option", [("anyup", "crop_size"), ("featup_jbu", "image_size"),
                                            ("featsharp", "model_resolution")])
def test_image_sizes_must_be_patch_multiples(recipe, option, tmp_path):
    from anyup_dense.training.loop import build_recipe
    from training_helpers import tiny_config

    config = tiny_config(recipe, tmp_path, tmp_path / "out", **{option: 30})
    with pytest.raises(ValueError, match=f"{option} 30 must be a multiple of the backbone's patch size"):
        build_recipe(recipe, config)
