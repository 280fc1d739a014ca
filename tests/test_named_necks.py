"""Every registered upsampler has an mmseg neck of its own name, derived from the registry."""
import pytest
import torch
from mmseg.registry import MODELS

import anyup_dense
from anyup_dense.integrations.mmseg.necks import NAMED_NECKS
from upsampler_helpers import TINY_UPSAMPLER_KWARGS

EXPECTED = {"anyup": "AnyUpNeck", "featup_jbu": "FeatUpJBUNeck", "featsharp": "FeatSharpNeck", "jafar": "JAFARNeck",
            "loftup": "LoftUpNeck", "naf": "NAFNeck", "upsample_anything": "UpsampleAnythingNeck",
            "bilinear": "BilinearNeck", "bicubic": "BicubicNeck", "featup_implicit": "FeatUpImplicitNeck", "uplift": "UPLiFTNeck"}


def test_every_upsampler_has_a_named_neck():
    by_upsampler = {neck.fixed_upsampler: name for name, neck in NAMED_NECKS.items() if name != "FeatUpNeck"}
    assert set(by_upsampler) == set(anyup_dense.list_upsamplers())
    for upsampler, neck in EXPECTED.items():
        assert by_upsampler[upsampler] == neck
    assert NAMED_NECKS["FeatUpNeck"] is NAMED_NECKS["FeatUpJBUNeck"]  # the documented name stays


# featurizer upsamplers: tests/test_featsharp_neck.py (featup_implicit takes the same path)
@pytest.mark.parametrize("upsampler", sorted(set(EXPECTED) - {"featsharp", "featup_implicit"}))
def test_named_neck_runs_its_upsampler(upsampler):
    neck = MODELS.build(dict(type=EXPECTED[upsampler], **TINY_UPSAMPLER_KWARGS.get(upsampler, {})))
    assert neck.upsampler_name == upsampler
    features, image = torch.randn(1, 32, 8, 8), torch.rand(1, 3, 56, 56) * 255
    with torch.no_grad():
        (out,) = neck([features], image)
        expected = neck.upsampler(features, neck.to_imagenet(image), (56, 56))
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
