"""``import anyup_dense`` and the upsamplers need torch only (the framework-free core)."""
import subprocess
import sys

import pytest

BLOCKED = ("mmseg", "mmcv", "mmengine", "detectron2", "timm", "triton")

SCRIPT = f"""
import sys
for name in {BLOCKED!r}:
    sys.modules[name] = None  # any import of it now raises ImportError
import torch, anyup_dense
assert len(anyup_dense.list_upsamplers()) >= 6, anyup_dense.list_upsamplers()  # every built-in registered
up = anyup_dense.build_upsampler('anyup', qk_dim=16, num_heads=2)
out = up(torch.randn(1, 3, 4, 4), torch.randn(1, 3, 16, 16))
assert out.shape == (1, 3, 16, 16)
print('ok', sorted(m for m in sys.modules if m.split('.')[0] in {BLOCKED!r} and sys.modules[m] is not None))
"""


@pytest.mark.slow
def test_core_imports_and_runs_without_frameworks():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok []"
