"""FeatSharpNeck takes inputs of any size: the backbone runs on the square model-resolution
view of the guidance (as in the Detectron2 backbone), whole and slide inference."""
import pathlib

import pytest
import torch
import torch.nn.functional as F
from mmengine import Config
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

import anyup_dense.integrations.mmseg  # noqa: F401
from anyup_dense.backbones.featurizer import backbone_featurizer
from mmseg_helpers import batch

CONFIG = (pathlib.Path(__file__).resolve().parents[1] / "configs" / "mmseg" / "linear_probe"
          / "featsharp_vit-s14-dinov2_linear-probe_ade20k-151_448x448.py")
RESOLUTION = 56


@pytest.fixture(scope="module")
def segmentor():
    cfg = Config.fromfile(str(CONFIG))
    cfg.merge_from_dict({
        "model.backbone": dict(model_name="vit_small_patch14_dinov2", pretrained=None, img_size=RESOLUTION,
                               depth=2, embed_dim=32, num_heads=2),
        "model.decode_head.in_channels": 32, "model.decode_head.num_classes": 4,
        "model.neck.dim": 32, "model.neck.model_resolution": RESOLUTION, "model.neck.num_heads": 2})
    init_default_scope("mmseg")
    torch.manual_seed(0)
    return MODELS.build(cfg.model).eval()


@pytest.mark.parametrize("size", [(RESOLUTION, 84), (112, 112), (42, 70)])
def test_any_input_size_equals_featsharp_on_the_model_view(segmentor, size):
    image = torch.randn(1, 3, *size) * 50 + 120
    with torch.no_grad():
        (out,) = segmentor.extract_feat(image)
        neck = segmentor.neck
        guidance = neck.to_imagenet(image)
        view = F.interpolate(guidance, size=(RESOLUTION, RESOLUTION), mode="bilinear", align_corners=False)
        featurizer = backbone_featurizer(segmentor.backbone, neck.in_index)
        expected = neck.upsampler(featurizer(view), guidance, size, featurizer=featurizer)
    assert out.shape == (1, 32, *size)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_model_resolution_input_reuses_the_backbone_map(segmentor):
    """At exactly the model resolution the segmentor's own backbone map is the view's map."""
    image = torch.randn(1, 3, RESOLUTION, RESOLUTION) * 50 + 120
    with torch.no_grad():
        maps = segmentor.backbone(image)
        features, _ = segmentor.neck._featurizer_view(maps[-1], segmentor.neck.to_imagenet(image),
                                                      segmentor.backbone)
    assert features is maps[-1]


@pytest.mark.parametrize("mode", ["whole", "slide"])
def test_whole_and_slide_inference_on_non_square_inputs(segmentor, mode):
    segmentor.test_cfg = Config(dict(mode=mode, crop_size=(RESOLUTION, 70), stride=(28, 28)))
    data = segmentor.data_preprocessor(batch(1, 84, 112), training=False)
    with torch.no_grad():
        result = segmentor.predict(data["inputs"], data["data_samples"])
    logits = result[0].seg_logits.data
    assert logits.shape == (4, 84, 112) and torch.isfinite(logits).all() and logits.std() > 0
