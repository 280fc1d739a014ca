"""anyup_dense.compare: the preservation figure, peak-memory tracking, the upsampler zoo, tables."""
import dataclasses
import csv

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from anyup_dense import build_upsampler, list_upsamplers
from anyup_dense.backbones import TimmViT
from anyup_dense.compare import PeakTensorMemory, build_for_backbone, feature_preservation, measure
from anyup_dense.compare.report import GAP, LABEL_HEIGHT, markdown_table, panel_grid, write_csv
from anyup_dense.upsamplers import anyup

MIB = 2 ** 20


def test_preservation_is_one_for_nearest_upsampling():
    """Nearest upsampling by an integer factor repeats each feature over its cell, so the cell
    average is the feature itself: exactly 1; negated output: exactly -1."""
    features = torch.randn(2, 16, 5, 7)
    nearest = F.interpolate(features, scale_factor=4, mode="nearest")
    assert feature_preservation(nearest, features) == pytest.approx(1.0, abs=1e-12)
    assert feature_preservation(-nearest, features) == pytest.approx(-1.0, abs=1e-12)


def test_preservation_hand_computed():
    """A 1x2 grid upsampled x2: cell 0 averages to [1, 1] (input [1, 0]: cos = 1/sqrt 2), cell 1
    to [0, 2] (input [0, 1]: cos = 1); mean (1/sqrt 2 + 1) / 2."""
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(1, 2, 1, 2)
    up = torch.zeros(1, 2, 2, 4)
    up[0, 0, :, 0:2] = torch.tensor([[2.0, 0.0], [0.0, 2.0]])  # channel 0 of cell 0: mean 1
    up[0, 1, :, 0:2] = 1.0  # channel 1 of cell 0: mean 1
    up[0, 1, :, 2:4] = 2.0  # cell 1 = [0, 2]
    assert feature_preservation(up, features) == pytest.approx((2 ** -0.5 + 1) / 2, abs=1e-12)


@pytest.mark.parametrize("up, feats, match", [
    (torch.zeros(1, 3, 8, 8), torch.zeros(1, 4, 2, 2), "batch and channels"),
    (torch.zeros(1, 3, 1, 8), torch.zeros(1, 3, 2, 2), "at least the feature grid"),
    (torch.zeros(3, 8, 8), torch.zeros(1, 3, 2, 2), "upsampled must be a 4-D"),
])
def test_preservation_rejects_bad_shapes(up, feats, match):
    with pytest.raises(ValueError, match=match):
        feature_preservation(up, feats)


def test_peak_memory_hand_computed():
    """1 MiB kept, 4 MiB temporary (peak 5), a view (no new storage), then +1 MiB: peak 5, live 2;
    the pre-existing input is not counted."""
    x = torch.randn(256, 1024)
    with torch.inference_mode(), PeakTensorMemory() as memory:
        a = x * 2
        b = torch.randn(1024, 1024)
        del b
        c = a.view(-1) + 1  # noqa: F841
    assert memory.peak_bytes == 5 * MIB and memory.live_bytes == 2 * MIB


def test_measure_returns_output_time_and_peak():
    out, seconds, peak = measure(lambda: torch.ones(512, 512) * 3, torch.device("cpu"))
    assert torch.equal(out, torch.full((512, 512), 3.0)) and seconds > 0
    assert peak == 2 * MIB  # ones (1 MiB) alive while the product (1 MiB) is made


@pytest.fixture(scope="module")
def tiny_vit():
    return TimmViT("vit_small_patch14_dinov2.lvd142m", img_size=56, depth=1, embed_dim=32, num_heads=2)


@pytest.mark.slow
def test_zoo_builds_every_upsampler_for_the_backbone(tiny_vit, tmp_path, monkeypatch):
    """Every registered upsampler runs on the tiny ViT's C=32 features of a 126 image (9x9) to
    36x36, random weights when nothing is cached, and the per-image fit with the requested steps."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    image = torch.randn(1, 3, 126, 126)
    with torch.inference_mode():
        (features,) = tiny_vit(image)
    for name in list_upsamplers():
        entry = build_for_backbone(name, tiny_vit, 126, fit_steps=2)
        with torch.inference_mode():
            out = entry.upsampler(features, image, 36, **entry.call_kwargs)
        assert out.shape == (1, 32, 36, 36), name
        assert entry.weights.startswith(("random", "none")), (name, entry.weights)
    assert build_for_backbone("upsample_anything", tiny_vit, 126, fit_steps=2).upsampler.steps == 2


def test_zoo_uses_a_cached_release_and_falls_back_when_a_download_fails(tiny_vit, tmp_path, monkeypatch):
    """A release in torch.hub's cache is loaded (the weights are the file's); a missing one is
    downloaded only with allow_download, and a failed download (a closed local port) gives
    random weights and says why."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    assert build_for_backbone("anyup", tiny_vit, 56).weights == "random (anyup_paper not cached; pass --download)"
    reference = build_upsampler("anyup")
    (tmp_path / "checkpoints").mkdir()
    torch.save(reference.state_dict(), tmp_path / "checkpoints" / "anyup_paper.pth")
    entry = build_for_backbone("anyup", tiny_vit, 56)
    assert entry.weights == "anyup_paper"
    for key, value in reference.state_dict().items():
        assert torch.equal(entry.upsampler.state_dict()[key], value), key
    monkeypatch.setitem(anyup.RELEASES, "anyup_paper",
                        dataclasses.replace(anyup.RELEASES["anyup_paper"], url="http://127.0.0.1:9/anyup_paper_missing.pth", file_name="anyup_paper_missing.pth"))
    entry = build_for_backbone("anyup", tiny_vit, 56, allow_download=True)
    assert entry.weights.startswith("random (anyup_paper could not be fetched")


def test_markdown_and_csv_tables(tmp_path):
    rows = [dict(name="bilinear", miou=40.54, note=None), dict(name="anyup", miou=42.431)]
    assert markdown_table(rows, ["name", "miou", "note"]).splitlines() == [
        "| name | miou | note |", "|---|---|---|", "| bilinear | 40.54 | - |", "| anyup | 42.43 | - |"]
    write_csv(str(tmp_path / "t.csv"), rows, ["name", "miou"])
    with open(tmp_path / "t.csv") as file:
        assert list(csv.DictReader(file)) == [dict(name="bilinear", miou="40.54"), dict(name="anyup", miou="42.431")]


def test_panel_grid_layout():
    """5 panels, 2 columns: 3 rows; panel k at divmod(k, 2) with its colour; white gaps."""
    panels = [np.full((3, 3, 3), 10 * (k + 1), np.uint8) for k in range(5)]
    grid = panel_grid(panels, [f"p{k}" for k in range(5)], size=6, columns=2)
    cell_h, cell_w = 6 + LABEL_HEIGHT + GAP, 6 + GAP
    assert grid.shape == (3 * cell_h - GAP, 2 * cell_w - GAP, 3)
    for k in range(5):
        row, col = divmod(k, 2)
        assert (grid[row * cell_h:row * cell_h + 6, col * cell_w:col * cell_w + 6] == 10 * (k + 1)).all()
    assert (grid[2 * cell_h:2 * cell_h + 6, cell_w:] == 255).all()  # the empty sixth cell
    with pytest.raises(ValueError, match="equal length"):
        panel_grid(panels, ["one"], size=6)
