"""LoftUp: banded (chunked) evaluation, checkpoints, dtypes (parity with the official code:
tests/test_parity.py)."""
import pytest
import torch

import anyup_dense.upsamplers.loftup  # noqa: F401  (registers "loftup")
from anyup_dense import build_upsampler
from anyup_dense.checkpoints import CheckpointMismatchError
from anyup_dense.upsamplers.loftup import RELEASES, LoftUp
from helpers import FIXTURES, load_fixture, relative_errors
from parity_adapters import ADAPTERS, build_model

CASES = sorted(p.name for p in FIXTURES.glob("loftup_*.pt"))


def ctor(case: dict) -> dict:
    return {k: case["config"][k] for k in ADAPTERS["loftup"].ctor_keys}


def upsample_case(model: LoftUp, case: dict, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The case's forward (``loftup_c16_nf10_h2_l3_w1`` has a 3x1 feature grid)."""
    features, image = case["inputs"]["features"].to(dtype), case["inputs"]["image"].to(dtype)
    return model(features, image, output_size=case["config"]["output_size"])


def test_phase_bias_is_a_flat_reread():
    """Channel f*M + d uses flat(biases[k])[f*M + d] (the official reshape), not the transpose."""
    torch.manual_seed(1)
    core = LoftUp(8, n_freqs=3).double().upsampler
    feat = core.fourier_feat[1]
    colors = torch.rand(1, 3, 4, 5, dtype=torch.float64) - 0.5
    out = feat((4, 5), (0, 4), 1, colors)
    y, x = torch.meshgrid(torch.linspace(-1, 1, 4, dtype=torch.float64), torch.linspace(-1, 1, 5, dtype=torch.float64),
                          indexing="ij")
    inputs = [y, x, *colors[0]]
    freqs = torch.exp(torch.linspace(-2, 10, 3, dtype=torch.float64))
    flat = feat.biases.detach().reshape(2, -1)
    for f in range(3):
        for d in range(5):
            c = f * 5 + d
            torch.testing.assert_close(out[0, c], torch.sin(inputs[d] * freqs[f] + flat[0, c]), rtol=0, atol=1e-12)
            torch.testing.assert_close(out[0, 15 + c], torch.cos(inputs[d] * freqs[f] + flat[1, c]), rtol=0, atol=1e-12)
    torch.testing.assert_close(out[0, 30:], colors[0])


def test_chunked_equals_dense_with_gradients():
    """Bands of 2, 2, 2, 2 and 1 rows (``max_pixels_per_chunk`` rounds down to whole rows; 2-row
    conv halos; checkpointed backward) == one dense pass, for the output and the gradients of
    features, image and every parameter; without gradients bands of 1 row are also checked
    (float64; the fixture's first 9 image rows keep it fast)."""
    case = load_fixture("loftup_c32_b2_nonsq.pt")
    feats, image = case["inputs"]["features"], case["inputs"]["image"][:, :, :9]
    results = []
    for options in ({"dense": True}, {"max_pixels_per_chunk": 2 * 38 + 5}):
        model = build_model(case, **options)
        f, im = feats.clone().requires_grad_(), image.clone().requires_grad_()
        out = model(f, im)
        weight = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
        (out * weight).sum().backward()
        grads = {"features": f.grad, "image": im.grad}
        grads.update({name: p.grad for name, p in model.named_parameters()})
        results.append((out.detach(), grads))
    (out_dense, g_dense), (out_chunk, g_chunk) = results
    assert relative_errors(out_chunk, out_dense)[0] <= 1e-12
    for name, grad in g_dense.items():
        assert grad is not None and g_chunk[name] is not None, name
        assert relative_errors(g_chunk[name], grad)[0] <= 1e-10, name
    with torch.no_grad():
        out_rows = build_model(case, max_pixels_per_chunk=1)(feats, image)
    assert relative_errors(out_rows, out_dense)[0] <= 1e-12


def test_batch_coupling_and_per_image_switch():
    """Official min-max statistics span the batch; ``per_image_minmax`` makes each image
    independent, equal to running it alone."""
    case = load_fixture("loftup_c32_b2_nonsq.pt")
    feats, image = case["inputs"]["features"], case["inputs"]["image"]
    with torch.no_grad():
        coupled = build_model(case)(feats, image)
        alone = torch.cat([build_model(case)(feats[i:i + 1], image[i:i + 1]) for i in range(2)])
        independent = build_model(case, per_image_minmax=True)(feats, image)
    assert relative_errors(independent, alone)[0] <= 1e-12
    assert relative_errors(coupled, alone)[0] > 0.1  # measured 0.81: the coupling is real


def test_batchnorm_uses_running_stats_in_train_mode():
    case = load_fixture("loftup_c48_guid_up.pt")
    model = build_model(case).train()
    with torch.no_grad():
        out = upsample_case(model, case)
    assert relative_errors(out, case["output"])[0] <= 1e-9
    for key, value in model.state_dict().items():
        assert torch.equal(value.to(case["state_dict"][key].dtype), case["state_dict"][key]), key


def write_official_bin(case: dict, path) -> None:
    """The torch.hub file layout: a plain state_dict with upsampler.* / channelnorm.* keys."""
    torch.save({k: v.clone() for k, v in case["state_dict"].items()}, path)


def test_released_dinov2s_architecture():
    """The dinov2s release implies LoftUp(384, lr_size=16): 4,303,894 parameters in 54 tensors
    (spec). Every release's URL, cache file and layout: tests/test_releases.py."""
    assert dict(RELEASES["loftup_dinov2s"].build_kwargs) == dict(dim=384, lr_size=16)
    model = build_upsampler("loftup", **RELEASES["loftup_dinov2s"].build_kwargs)
    assert sum(p.numel() for p in model.parameters()) == 4_303_894
    assert len(model.state_dict()) == 54


def test_bare_safetensors_layout(tmp_path):
    """``model.safetensors`` of PyTorchModelHubMixin: bare LoftUp keys, no ChannelNorm. Refused
    unless the identity ChannelNorm is accepted explicitly; then it equals the wrapper with
    ChannelNorm weight 1, bias 0."""
    from safetensors.torch import save_file

    case = load_fixture("loftup_c32_b2_nonsq.pt")
    bare = {k[len("upsampler."):]: v.clone() for k, v in case["state_dict"].items() if k.startswith("upsampler.")}
    path = tmp_path / "model.safetensors"
    save_file(bare, str(path))
    with pytest.raises(CheckpointMismatchError, match="pytorch_model.bin"):
        build_upsampler("loftup", pretrained=str(path), **ctor(case))
    model = build_upsampler("loftup", pretrained=str(path), assume_identity_channelnorm=True, **ctor(case)).double()
    assert torch.equal(model.upsampler.first_conv[1].weight, bare["first_conv.1.weight"].double())
    expected = build_model(case)
    with torch.no_grad():
        expected.channelnorm.norm.weight.fill_(1.0)
        expected.channelnorm.norm.bias.zero_()
        feats, image = case["inputs"]["features"], case["inputs"]["image"]
        assert relative_errors(model(feats, image), expected(feats, image))[0] == 0.0


def test_mismatched_keys_are_listed(tmp_path):
    case = load_fixture("loftup_c32_b2_nonsq.pt")
    state_dict = dict(case["state_dict"])
    state_dict["upsampler.extra.weight"] = state_dict.pop("upsampler.first_conv.2.running_var")
    path = tmp_path / "broken.bin"
    torch.save(state_dict, path)
    with pytest.raises(CheckpointMismatchError) as info:
        build_upsampler("loftup", pretrained=str(path), **ctor(case))
    assert "upsampler.first_conv.2.running_var" in str(info.value)
    assert "upsampler.extra.weight" in str(info.value)
    write_official_bin(case, path)
    with pytest.raises(CheckpointMismatchError, match=r"first_conv\.1\.weight: checkpoint \(52, 203, 3, 3\)"):
        build_upsampler("loftup", pretrained=str(path), **{**ctor(case), "dim": 48})


@pytest.mark.parametrize("dtype, bound", [(torch.bfloat16, 2e-2), (torch.float16, 3e-3)])
def test_low_precision_module_cast(dtype, bound):
    """Module cast to bf16/fp16 at the released width (C = 384) vs float32 on the same
    (rounded) inputs: mean relative error measured <= 8.6e-3 (bf16) and 9.4e-4 (fp16) over 4
    seeds; bounds ~2.3x and 3x. (Rounding the *image* to bf16/fp16 changes the colour
    Fourier features themselves: see the LoftUp docstring.)"""
    torch.manual_seed(0)
    model = LoftUp(384).eval()
    feats = (torch.randn(1, 384, 4, 4) * 2 + 0.5).to(dtype)
    image = torch.randn(1, 3, 20, 20).to(dtype)
    with torch.no_grad():
        ref = model(feats.float(), image.float())
        out = model.to(dtype)(feats, image)
    assert out.dtype == dtype and torch.isfinite(out).all()
    error = ((out.float() - ref).abs().mean() / ref.abs().mean()).item()
    assert error <= bound, error


def test_invalid_arguments():
    with pytest.raises(ValueError, match="dim"):
        build_upsampler("loftup")
    with pytest.raises(ValueError, match="does not match release"):
        build_upsampler("loftup", pretrained="loftup_clip", dim=384)
    with pytest.raises(ValueError, match="num_heads"):
        LoftUp(30, num_heads=4)
    with pytest.raises(ValueError, match="lr_pe_type"):
        LoftUp(32, lr_pe_type="rope")
    model = LoftUp(32, max_pixels_per_chunk=0)
    with pytest.raises(ValueError, match="max_pixels_per_chunk"):
        model(torch.randn(1, 32, 2, 2), torch.randn(1, 3, 8, 8))
    with pytest.raises(ValueError, match="features have 16 channels"):
        LoftUp(32)(torch.randn(1, 16, 2, 2), torch.randn(1, 3, 8, 8))
