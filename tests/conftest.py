"""Shared test set-up (the helpers test modules import are in helpers.py).

Triton kernels run on the CPU through its interpreter; the flag must be set before triton
is first imported, so it is set here, before any test module imports anything. On a
machine with CUDA the real compiled path is tested instead, and tests marked ``gpu`` run.
"""
import os
import pathlib

import pytest
import torch

from helpers import load_tool

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` are skipped where CUDA is not available."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> pathlib.Path:
    """A tiny dataset of every mmseg layout the configs read (tools/make_synthetic_mmseg.py)."""
    make_synthetic = load_tool("make_synthetic_mmseg").make_synthetic
    return pathlib.Path(make_synthetic(str(tmp_path_factory.mktemp("mmseg_data")), num_train=4, num_val=2))
