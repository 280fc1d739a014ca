"""Every mmseg config's neck is exactly the neck of the one base that names it.

A leaf config names its neck either with a neck piece (``_base_/necks/*.py``, copied in by
``model = dict(neck={{_base_.neck}})``) or, without one, through the single model or protocol
base that defines ``model.neck``. Merging must not add keys from any other base: the model
bases also carry a default ``BilinearNeck``, and a key added there must not leak into the
AnyUp, FeatUp or FeatSharp configs. The second test adds such a key to the neck of every
model and protocol base (in a copy of the tree) and checks again.
"""
import ast
import functools
import pathlib
import re
import shutil

import pytest
from mmengine import Config

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs" / "mmseg"
LEAVES = sorted(p.relative_to(CONFIGS) for p in CONFIGS.rglob("*.py") if "_base_" not in p.relative_to(CONFIGS).parts)
PROBE_KEY = "leak_probe"


@functools.lru_cache(maxsize=None)
def load(path: pathlib.Path) -> Config:
    """The merged config, without importing its ``custom_imports`` (only its text is checked)."""
    return Config.fromfile(str(path), import_custom_modules=False)


def base_files(config: pathlib.Path) -> list:
    """The files a config lists in ``_base_`` (a string or a list of relative paths)."""
    for node in ast.parse(config.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_base_" for t in node.targets):
            bases = ast.literal_eval(node.value)
            return [(config.parent / b).resolve() for b in ([bases] if isinstance(bases, str) else bases)]
    return []


def named_neck(leaf: pathlib.Path) -> dict:
    """The neck dict the leaf names (``_delete_``, a merge instruction, dropped)."""
    bases = base_files(leaf)
    pieces = [b for b in bases if b.parent.name == "necks"]
    if pieces:
        assert len(pieces) == 1, f"{leaf}: several neck pieces {pieces}"
        neck = load(pieces[0]).neck.to_dict()
    else:
        necks = [cfg.model.neck.to_dict() for cfg in map(load, bases)
                 if "neck" in cfg.get("model", {})]
        assert len(necks) == 1, f"{leaf}: {len(necks)} bases define model.neck, expected exactly one"
        neck = necks[0]
    neck.pop("_delete_", None)
    return neck


def assert_necks_exact(root: pathlib.Path) -> None:
    for rel in LEAVES:
        leaf = root / rel
        assert load(leaf).model.neck.to_dict() == named_neck(leaf), rel


def test_each_config_has_exactly_its_named_neck():
    assert len(LEAVES) >= 40  # linear/depth/normal probes, compare presets, fine-tuning
    assert_necks_exact(CONFIGS)


@pytest.mark.slow
def test_a_key_added_to_another_base_neck_does_not_leak(tmp_path):
    root = tmp_path / "mmseg"
    shutil.copytree(CONFIGS, root)
    probed = []
    for folder in ("models", "protocols"):
        for base in (root / "_base_" / folder).glob("*.py"):
            text, count = re.subn(r"\bneck=dict\(", f"neck=dict({PROBE_KEY}=1, ", base.read_text())
            base.write_text(text)
            probed += [base.name] * count
    assert "vit-s14-dinov2_linear-probe.py" in probed and "anyup.py" in probed
    assert_necks_exact(root)
    leaf = load(root / "linear_probe" / "bilinear_vit-s14-dinov2_linear-probe_ade20k-151_448x448.py")
    assert PROBE_KEY not in leaf.model.neck  # the bilinear piece replaces the model base's default neck too
    compare = load(root / "compare" / "anyup_ade20k-151.py")
    assert compare.model.neck[PROBE_KEY] == 1  # the protocol base names this neck: its keys are the neck's

