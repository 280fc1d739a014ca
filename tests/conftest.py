"""Shared test set-up.

Triton kernels run on the CPU through its interpreter; the flag must be set before triton
is first imported, so it is set here, before any test module imports anything. On a
machine with CUDA the real compiled path is tested instead.
"""
import os
import pathlib

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


def load_fixture(name: str) -> dict:
    """A parity case from tests/fixtures (format: tests/fixtures/README.md)."""
    return torch.load(FIXTURES / name, weights_only=True)
