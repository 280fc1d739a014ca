"""Helpers the test modules import (fixtures of pytest itself live in conftest.py)."""
import dataclasses
import importlib.util
import pathlib

import torch
from safetensors.torch import save_file
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = pathlib.Path(__file__).parent / "fixtures"


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


def serve_release(monkeypatch, tmp_path: pathlib.Path, releases: dict, name: str, payload: dict,
                  **release_changes) -> pathlib.Path:
    """Serves ``payload`` as release ``name`` of the table ``releases``, for this test only.

    Writes ``payload`` to ``tmp_path/served/<file_name>`` (a safetensors release: the flat
    state_dict ``payload`` with safetensors, any other layout: ``torch.save(payload)``), points
    the release's url at that file's ``file://`` URI (with ``release_changes`` applied too, e.g.
    ``build_kwargs=``) and sets TORCH_HOME to ``tmp_path/torch_home``. Returns the path where
    torch.hub's cache copy lands on the first load.
    """
    release = dataclasses.replace(releases[name], **release_changes)
    served = tmp_path / "served" / release.file_name
    served.parent.mkdir(exist_ok=True)
    if release.layout == "safetensors":
        save_file({key: value.contiguous() for key, value in payload.items()}, str(served))
    else:
        torch.save(payload, served)
    monkeypatch.setitem(releases, name, dataclasses.replace(release, url=served.as_uri()))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home" / "hub" / "checkpoints" / release.file_name
