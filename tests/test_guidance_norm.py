"""The guidance an upsampler neck sees is the ImageNet-normalised RGB image, whatever the
data preprocessor's mean / std / channel order / scale: the Guided* segmentors hand the
preprocessor's values to the neck at build time; an explicit ``image_norm`` wins, and one on
the 0-1 scale against a 0-255 preprocessor is refused."""
import pytest
import torch

import anyup_dense.integrations.mmseg  # noqa: F401
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

from mmseg_helpers import batch

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
SIZE = 28
# preprocessor (mean, std, bgr_to_rgb): mmseg loads BGR; mean/std are listed in the order after the flip
PREPROCESSORS = {
    "imagenet-rgb": ([123.675, 116.28, 103.53], [58.395, 57.12, 57.375], True),
    "imagenet-bgr": ([103.53, 116.28, 123.675], [57.375, 57.12, 58.395], False),
    "clip-0.5": ([127.5] * 3, [127.5] * 3, True),
    "unit-scale": ([0.0] * 3, [255.0] * 3, True),        # pixels / 255
    "unit-scale-bgr": ([0.0] * 3, [255.0] * 3, False),
    "none": (None, None, False),                          # raw 0-255 BGR
}


def guided_model(mean, std, bgr_to_rgb, image_norm=None, model_type="GuidedEncoderDecoder"):
    init_default_scope("mmseg")
    head = dict(type="LinearProbeHead", in_channels=16, num_classes=4) if model_type == "GuidedEncoderDecoder" \
        else dict(type="DepthProbeHead", in_channels=16, mode="linear")
    return MODELS.build(dict(
        type=model_type,
        data_preprocessor=dict(type="SegDataPreProcessor", mean=mean, std=std, bgr_to_rgb=bgr_to_rgb),
        backbone=dict(type="TimmViT", model_name="vit_small_patch14_dinov2", pretrained=None, img_size=SIZE,
                      depth=1, embed_dim=16, num_heads=2),
        neck=dict(type="BilinearNeck", image_norm=image_norm),
        decode_head=head)).eval()


def seen_guidance(model, bgr: torch.Tensor) -> torch.Tensor:
    """The image the upsampler receives for the loaded (BGR uint8) image ``bgr`` [3,H,W]."""
    seen = []
    model.neck.upsampler.register_forward_pre_hook(lambda module, args: seen.append(args[1]))
    data = batch(1, SIZE, SIZE)
    data["inputs"] = [bgr]
    data = model.data_preprocessor(data, training=False)
    with torch.no_grad():
        model.extract_feat(data["inputs"])
    return seen[0][0].double()


def imagenet_rgb(bgr: torch.Tensor) -> torch.Tensor:
    """Independent float64 reference: BGR 0-255 -> RGB 0-1 -> ImageNet normalisation."""
    rgb = bgr.flip(0).double() / 255
    return (rgb - torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(3, 1, 1)) / torch.tensor(
        IMAGENET_STD, dtype=torch.float64).view(3, 1, 1)


@pytest.mark.parametrize("name", list(PREPROCESSORS))
@pytest.mark.parametrize("model_type", ["GuidedEncoderDecoder", "GuidedDepthEstimator"])
def test_guidance_is_imagenet_rgb_for_any_preprocessor(name, model_type):
    bgr = torch.randint(0, 256, (3, SIZE, SIZE), dtype=torch.uint8)
    model = guided_model(*PREPROCESSORS[name], model_type=model_type)
    # float32 affine maps of values up to ~2.7: measured worst error 4.6e-7 over these cases
    torch.testing.assert_close(seen_guidance(model, bgr), imagenet_rgb(bgr), atol=2e-6, rtol=0)


def test_explicit_image_norm_wins():
    bgr = torch.randint(0, 256, (3, SIZE, SIZE), dtype=torch.uint8)
    # the preprocessor says ImageNet, the neck is told CLIP values: the neck's values are used
    model = guided_model(*PREPROCESSORS["imagenet-rgb"], image_norm=dict(mean=[127.5] * 3, std=[127.5] * 3))
    preprocessed = (bgr.flip(0).double() - torch.tensor([123.675, 116.28, 103.53], dtype=torch.float64).view(3, 1, 1)) \
        / torch.tensor([58.395, 57.12, 57.375], dtype=torch.float64).view(3, 1, 1)
    as_clip = (preprocessed * 127.5 + 127.5) / 255  # what the neck believes the RGB 0-1 image is
    expected = (as_clip - torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(3, 1, 1)) / torch.tensor(
        IMAGENET_STD, dtype=torch.float64).view(3, 1, 1)
    torch.testing.assert_close(seen_guidance(model, bgr), expected, atol=2e-6, rtol=0)


def test_unit_scale_image_norm_against_a_0_255_preprocessor_is_refused():
    with pytest.raises(ValueError, match=r"image_norm=.*0-1 scale.*0-255"):
        guided_model(*PREPROCESSORS["imagenet-rgb"], image_norm=dict(mean=IMAGENET_MEAN, std=IMAGENET_STD))


def test_image_norm_keys_are_checked():
    with pytest.raises(ValueError, match="image_norm accepts only"):
        guided_model(*PREPROCESSORS["imagenet-rgb"], image_norm=dict(mean=[0] * 3, std=[1] * 3, to_rgb=True))
