"""Shared set-up for the training tests (no tests here): a tiny image folder, a tiny
random ViT and a config factory. Imported by the ``test_training_*`` modules."""
import pathlib

import pytest
import torch
from torchvision.io import write_png

from anyup_dense.training import get_recipe
from anyup_dense.training.loop import build_recipe

# patch 8, 32 px -> 4x4 token grids; 2 blocks of width 32
TINY_BACKBONE = "vit_small_patch14_dinov2"
TINY_BACKBONE_KWARGS = {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 32, "num_heads": 2}


def write_image_folder(root: pathlib.Path, count: int = 6) -> pathlib.Path:
    """``count`` PNGs of 64-96 px (smooth gradients plus noise, varying aspect), in two sub-folders."""
    generator = torch.Generator().manual_seed(0)
    for i in range(count):
        height, width = 64 + 8 * (i % 4), 96 - 8 * (i % 3)
        ramp = torch.linspace(0, 255, width).view(1, 1, width).expand(3, height, width)
        image = ramp * torch.rand(3, 1, 1, generator=generator) + 60 * torch.rand(3, height, width, generator=generator)
        folder = root / f"part{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        write_png(image.clamp(0, 255).to(torch.uint8), str(folder / f"img{i}.png"))
    return root


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> pathlib.Path:
    return write_image_folder(tmp_path_factory.mktemp("images"))


@pytest.fixture(autouse=True)
def _one_thread():
    """The test machine's cores are shared; one thread per process is the fastest."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_config(recipe: str, data, out_dir, **overrides):
    """A config of ``recipe`` on the tiny backbone, with small sizes and frequent logging."""
    values = dict(data=str(data), backbone=TINY_BACKBONE, backbone_weights="random",
                  backbone_kwargs=dict(TINY_BACKBONE_KWARGS), out_dir=str(out_dir), batch_size=2,
                  min_image_side=0, num_workers=0, log_every=1, device="cpu")
    values.update(overrides)
    return get_recipe(recipe).config_class(**values)


def fixed_batch_loss(recipe_name: str, config, upsampler_object=None, helpers=None) -> float:
    """The recipe's loss (eval mode, fixed generator) on the first 4 images, for a freshly
    built recipe or one loaded from a checkpoint."""
    from anyup_dense.training.data import ImageFolder
    from anyup_dense.training.distributed import DistInfo

    recipe = build_recipe(recipe_name, config)
    dataset = ImageFolder(config.data, recipe.load_size())
    if upsampler_object is None:
        recipe.prepare(dataset, DistInfo(0, 1, torch.device("cpu")))  # as a fresh run does before step 0
    else:
        recipe.import_upsampler(upsampler_object)
        recipe.load_helper_state_dict(helpers)
    batch = torch.stack([dataset[i] for i in range(4)])
    recipe.eval()
    torch.manual_seed(123)
    with torch.no_grad():
        loss, _ = recipe(batch, torch.Generator().manual_seed(123))
    return loss.item()


def assert_resume_bit_identical(recipe: str, data, tmp_path: pathlib.Path, steps: int = 4, **overrides) -> str:
    """Train ``steps`` steps in one go, and ``steps // 2`` steps then resume to ``steps``;
    assert both final checkpoints (weights, helper modules, optimiser state) are bit-identical.
    Returns the uninterrupted run's final model file."""
    from anyup_dense.training import train
    from anyup_dense.training.checkpointing import load_checkpoint

    straight = tiny_config(recipe, data, tmp_path / "straight", max_steps=steps, ckpt_every=steps, **overrides)
    path_straight = train(recipe, straight)
    half = tiny_config(recipe, data, tmp_path / "resumed", max_steps=steps // 2, ckpt_every=steps, **overrides)
    train(recipe, half)
    resumed = tiny_config(recipe, data, tmp_path / "resumed", max_steps=steps, ckpt_every=steps, resume="auto",
                          **overrides)
    path_resumed = train(recipe, resumed)
    model_a, state_a = load_checkpoint(path_straight)
    model_b, state_b = load_checkpoint(path_resumed)
    assert state_a["step"] == state_b["step"] == steps
    assert_same_tree(model_a, model_b)
    assert_same_tree(state_a["helpers"], state_b["helpers"])
    assert_same_tree(state_a["optimizer"], state_b["optimizer"])
    return path_straight


def assert_same_tree(a, b, where: str = "") -> None:
    """Recursive equality of nested dicts/lists of tensors, bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), f"tensors differ at {where}: max |diff| {(a.double() - b.double()).abs().max()}"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_tree(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tree(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_loss_decreases(recipe: str, data, tmp_path: pathlib.Path, steps: int, margin: float, **overrides) -> None:
    """A fixed-seed run of ``steps`` steps lowers the fixed-batch loss by more than
    ``margin`` x |initial loss| (losses with a learned-scale NLL may be negative)."""
    import math

    from anyup_dense.training import train
    from anyup_dense.training.checkpointing import load_checkpoint

    config = tiny_config(recipe, data, tmp_path / "decrease", max_steps=steps, ckpt_every=steps, **overrides)
    before = fixed_batch_loss(recipe, config)
    upsampler_object, state = load_checkpoint(train(recipe, config))
    after = fixed_batch_loss(recipe, config, upsampler_object, state["helpers"])
    assert math.isfinite(before) and math.isfinite(after)
    assert after < before - margin * abs(before), f"loss {before:.5f} -> {after:.5f} after {steps} steps"
