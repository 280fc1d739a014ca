"""Shared test set-up.

Triton kernels run on the CPU through its interpreter; the flag must be set before triton
is first imported, so it is set here, before any test module imports anything. On a
machine with CUDA the real compiled path is tested instead.
"""
import importlib.util
import os
import pathlib

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = pathlib.Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


def load_fixture(name: str) -> dict:
    """A parity case from tests/fixtures (format: tests/fixtures/README.md)."""
    return torch.load(FIXTURES / name, weights_only=True)


def relative_errors(ours: torch.Tensor, ref: torch.Tensor):
    """(worst element / max |ref|, norm of the difference / norm of ref), in float64: the
    two measures the fixtures' tolerances are stated in."""
    d = ours.double() - ref
    return (d.abs().max() / ref.abs().max()).item(), (d.norm() / ref.norm()).item()


def load_tool(name: str):
    """Import ``tools/<name>.py`` by path (detectron2 installs a site-packages ``tools``
    package, and ``test`` is a standard-library package, so plain imports can shadow ours)."""
    spec = importlib.util.spec_from_file_location(f"anyup_tools_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> pathlib.Path:
    """A tiny dataset of every mmseg layout the configs read (tools/make_synthetic_mmseg.py)."""
    make_synthetic = load_tool("make_synthetic_mmseg").make_synthetic
    return pathlib.Path(make_synthetic(str(tmp_path_factory.mktemp("mmseg_data")), num_train=4, num_val=2))


class LargestTensor(TorchDispatchMode):
    """Records in ``largest`` the most elements of any tensor an op returns (memory-bound tests)."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out
