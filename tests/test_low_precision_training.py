"""Every learned upsampler trains under CPU autocast (bf16, fp16): forward and backward run,
and the gradients are close to float32's (output figures at C=384: tools/precision_report.py).
Eval mode, so that dropout and training-time jitter do not differ between the two runs."""
import pytest
import torch
import torch.nn.functional as F

from anyup_dense import build_upsampler
from upsampler_helpers import TINY_UPSAMPLER_KWARGS

# name -> (constructor arguments, feature grid, image side); C = 32
CASES = {
    "anyup": ({**TINY_UPSAMPLER_KWARGS["anyup"], "num_heads": 2}, 4, 16),
    "featup_jbu": (TINY_UPSAMPLER_KWARGS["featup_jbu"], 4, 16),
    "jafar": (TINY_UPSAMPLER_KWARGS["jafar"], 4, 16),
    "loftup": (TINY_UPSAMPLER_KWARGS["loftup"], 4, 16),
    "naf": (TINY_UPSAMPLER_KWARGS["naf"], 4, 16),
    "featsharp": (dict(dim=32, model_resolution=16, patch_size=4, num_heads=2), 4, 16),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_training_step_under_autocast(name, dtype=torch.bfloat16):
    """bf16, the training recipes' precision (fp16 figures: tools/precision_report.py)."""
    kwargs, grid, side = CASES[name]
    torch.manual_seed(0)
    model = build_upsampler(name, **kwargs).eval()  # no dropout/jitter: both runs see the same function
    features = torch.randn(1, 32, grid, grid, requires_grad=True)
    image, target = torch.randn(1, 3, side, side), torch.randn(1, 32, side, side)
    extra = {"tile_features": torch.randn(1, 32, 2 * grid, 2 * grid)} if name == "featsharp" else {}
    params = [p for p in model.parameters() if p.requires_grad]

    def grads(autocast: bool):
        """d loss / d features, and every parameter's gradient concatenated."""
        with torch.autocast("cpu", dtype=dtype, enabled=autocast):
            loss = F.mse_loss(model(features, image, **extra).float(), target)
        grad = torch.autograd.grad(loss, [features, *params])
        return grad[0], torch.cat([g.flatten() for g in grad[1:]])

    (features_low, params_low), (features_ref, params_ref) = grads(True), grads(False)
    assert features_low.dtype == torch.float32 and params_low.dtype == torch.float32
    features_err = ((features_low - features_ref).norm() / features_ref.norm()).item()
    params_err = ((params_low - params_ref).norm() / params_ref.norm()).item()
    # measured worst over these cases: 1.8e-2 / 4.5e-2 (loftup) for features / parameters
    # (fp16: 1.8e-3 / 1.4e-2); bounds about 2x
    assert features_err < 0.04 and params_err < 0.1, (features_err, params_err)
