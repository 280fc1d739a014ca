"""The README's main job (tools/quickstart.py) and the PCA visualisation it relies on."""
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from anyup_dense import list_upsamplers
from anyup_dense.compare.report import GAP, LABEL_HEIGHT, grid_shape
from anyup_dense.demo_image import synthetic_image
from anyup_dense.visualization import FeaturePCA, side_by_side

from helpers import load_tool

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_pca_recovers_dominant_directions():
    """Features varying along two known channel directions: the first two PCA colours
    follow those directions, and the third (noise) component carries little range."""
    torch.manual_seed(0)
    h = w = 16
    ramp = torch.linspace(-1, 1, w).expand(h, w)
    direction_a, direction_b = torch.zeros(8), torch.zeros(8)
    direction_a[2], direction_b[5] = 1.0, 1.0
    feats = 5 * ramp * direction_a[:, None, None] + 2 * ramp.T * direction_b[:, None, None]
    feats = feats + 0.01 * torch.randn(8, h, w)
    pca = FeaturePCA(feats)
    assert abs(abs(pca.basis[2, 0].item()) - 1) < 1e-3
    assert abs(abs(pca.basis[5, 1].item()) - 1) < 1e-3
    colours = pca.colour(feats)
    assert colours.shape == (h, w, 3) and colours.dtype == np.uint8
    first = colours[..., 0].astype(float)
    assert abs(np.corrcoef(first.ravel(), ramp.numpy().ravel())[0, 1]) > 0.99


def test_side_by_side_layout():
    panels = [np.zeros((4, 4, 3), np.uint8), np.full((8, 8, 3), 7, np.uint8)]
    out = side_by_side(panels, size=10, gap=2)
    assert out.shape == (10, 22, 3)
    assert (out[:, 10:12] == 255).all() and (out[:, 12:] == 7).all()


def test_synthetic_image_is_deterministic():
    a, b = synthetic_image(56, seed=1), synthetic_image(56, seed=1)
    assert a.shape == (56, 56, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert a.std() > 20  # not a flat image


@pytest.mark.slow
def test_quickstart_compares_every_upsampler(tmp_path):
    """Offline, no weights anywhere: every registered upsampler gets a row (random or no weights,
    time, peak memory, preservation) and a panel in the grid (image | low-res | upsamplers)."""
    out = tmp_path / "quick.png"
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "quickstart.py"), "--size", "126", "--fit-steps", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "TORCH_HOME": str(tmp_path / "torch")},
    )
    assert result.returncode == 0, result.stderr
    assert "weights: random (none found locally; pass --download)" in result.stdout
    assert "per-image fits use 1 steps" in result.stdout
    names = list_upsamplers()
    table = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    rows = {cells[0]: cells for cells in ([c.strip() for c in line.strip("|").split("|")] for line in table)}
    assert rows.pop("upsampler") == ["upsampler", "weights", "time_ms", "peak_mib", "preservation", "notes"]
    assert sorted(rows) == names
    for name, (_, weights, time_ms, peak_mib, preservation, notes) in rows.items():
        assert weights.startswith(("random", "none (has no weights)")), (name, weights)
        assert float(time_ms) > 0 and float(peak_mib) > 0 and -1 <= float(preservation) <= 1, name
    assert float(rows["bilinear"][4]) > 0.9  # smooth interpolation nearly preserves the cell means
    assert rows["upsample_anything"][5] == "1 fit steps (official 51)"
    image = np.asarray(Image.open(out))
    count = 2 + len(names)
    grid_rows, columns = grid_shape(count, 4)
    cell_h, cell_w = 126 + LABEL_HEIGHT + GAP, 126 + GAP
    assert image.shape == (grid_rows * cell_h - GAP, columns * cell_w - GAP, 3)
    for k in range(count):
        row, col = divmod(k, columns)
        panel = image[row * cell_h:row * cell_h + 126, col * cell_w:col * cell_w + 126].astype(float)
        assert panel.std() > 1, k  # a real PCA colouring, not a blank panel


def test_quickstart_refuses_unknown_upsamplers_and_sizes():
    quickstart = load_tool("quickstart")
    with pytest.raises(SystemExit):
        quickstart.parse_args(["--upsamplers", "bilinear,nope"])
    with pytest.raises(SystemExit):
        quickstart.parse_args(["--size", "100"])
    args = quickstart.parse_args(["--upsamplers", "bilinear,naf", "--device", "cpu"])
    assert args.upsamplers == ["bilinear", "naf"] and args.fit_steps is None
    # CPU: the per-method short fits; --fit-steps overrides them; on a GPU the official length
    assert [quickstart.fit_steps(args, n) for n in ("upsample_anything", "featup_implicit", "naf")] == [10, 1, None]
    assert quickstart.fit_steps(quickstart.parse_args(["--fit-steps", "3", "--device", "cpu"]), "featup_implicit") == 3
    assert quickstart.fit_steps(quickstart.parse_args(["--device", "cuda"]), "featup_implicit") is None
