"""The README's main job (tools/quickstart.py) and the PCA visualisation it relies on."""
import pathlib
import subprocess
import sys

import numpy as np
import torch
from PIL import Image

from anyup_dense.demo_image import synthetic_image
from anyup_dense.visualization import FeaturePCA, side_by_side

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


def test_quickstart_writes_png(tmp_path):
    out = tmp_path / "quick.png"
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "quickstart.py"), "--size", "112", "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "TORCH_HOME": str(tmp_path / "torch")},
    )
    assert result.returncode == 0, result.stderr
    assert "weights: random (none found locally)" in result.stdout
    assert "anyup weights: random" in result.stdout
    assert "timings on cpu: backbone" in result.stdout
    image = np.asarray(Image.open(out))
    assert image.shape == (112, 4 * 112 + 3 * 4, 3)
    anyup_panel = image[:, -112:].astype(float)
    assert anyup_panel.std() > 1  # a real PCA colouring, not a blank panel
