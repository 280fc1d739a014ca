"""Parity with the official implementations: every fixture in tests/fixtures/, keyed by its own
``method``, through the harness of tests/parity_adapters.py (adapters, tolerance table).

* ``test_output``: the output (and, for the per-image fits, every recorded step) in each precision
  the method has a limit for, under each of its variants (backends, chunk sizes);
* ``test_pieces``: the float64 intermediates the fixture kept, one item per piece group, which
  localises a failure to one component.
"""
import functools

import pytest
import torch

from helpers import FIXTURES, load_fixture
from parity_adapters import ADAPTERS, Adapter, adapter_for, check_parity, check_pieces, tolerances_for

FILES = sorted(path.name for path in FIXTURES.glob("*.pt"))
# The shared reference set (tests/fixtures/README.md, "Cases in this set"): a lost file fails here.
CASES_PER_METHOD = {"anyup": 4, "featup_jbu": 4, "featsharp": 4, "jafar": 4, "loftup": 4, "naf": 4, "uplift": 4,
                    "featup_implicit": 3, "upsample_anything": 3}


@functools.lru_cache(maxsize=None)
def fixture(name: str) -> dict:
    """Loaded once per session (collection reads the method; tests must not modify it)."""
    return load_fixture(name)


def _id(name: str, *parts: str) -> str:
    return "-".join([name[:-len(".pt")], *(part for part in parts if part)])


def output_params():
    for name in FILES:
        method = fixture(name)["method"]
        adapter = ADAPTERS.get(method, Adapter())
        for variant_name, variant in adapter.variants.items():
            for dtype in variant.dtypes:
                if dtype in tolerances_for(method):
                    yield pytest.param(name, dtype, variant_name,
                                       id=_id(name, str(dtype).replace("torch.", ""), variant_name))


def pieces_params():
    for name in FILES:
        adapter = ADAPTERS.get(fixture(name)["method"], Adapter())
        for variant_name, variant in adapter.variants.items():
            for group in adapter.pieces if variant.pieces is None else variant.pieces:
                yield pytest.param(name, group, variant_name, id=_id(name, group, variant_name))


@pytest.mark.parametrize("name, dtype, variant", list(output_params()))
def test_output(name, dtype, variant):
    check_parity(fixture(name), dtype, variant)


@pytest.mark.parametrize("name, group, variant", list(pieces_params()))
def test_pieces(name, group, variant):
    check_pieces(fixture(name), group, variant)


def test_fixture_set():
    """Every file names a registered upsampler (else its tests could not run) and no file is lost."""
    methods = [fixture(name)["method"] for name in FILES]
    for method in set(methods):
        adapter_for(method)
    assert {m: methods.count(m) for m in set(methods)} == CASES_PER_METHOD
    denormalized = [n for n in FILES if "output_denormalized" in fixture(n)["intermediates"]]
    assert len(denormalized) == 3, denormalized  # FeatSharp's denormalize=True path is checked on these


def test_unregistered_method_fails_loudly():
    case = dict(fixture(FILES[0]), method="not_an_upsampler")
    with pytest.raises(AssertionError, match="fixture method 'not_an_upsampler' has no registered upsampler"):
        check_parity(case)


def test_a_wrong_output_fails():
    """The harness compares something: a fixture whose output is off by 1e-6 relative fails in float64."""
    case = fixture("naf_c6_k3_layers1_b2.pt")
    shifted = dict(case, output=case["output"] * (1 + 1e-6))
    with pytest.raises(AssertionError, match="output"):
        check_parity(shifted, torch.float64)
