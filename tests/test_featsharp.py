"""FeatSharp: the featurizer path, checkpoints (plain and spectral), errors (parity with the official
code: tests/test_parity.py)."""
import pytest
import torch

from anyup_dense import build_upsampler
from anyup_dense.ops.neighborhood_attention import neighborhood_attention
from anyup_dense.checkpoints import CheckpointMismatchError
from anyup_dense.upsamplers.featsharp import FeatSharp, tile_crops
from anyup_dense.upsamplers.featsharp_checkpoint import bake_spectral_weights
from anyup_dense.upsamplers.featsharp_fusion import alibi_slopes
from anyup_dense.upsamplers.featsharp_jbu import prime_factors
from helpers import FIXTURES, load_fixture, relative_errors
from parity_adapters import build_model, inputs_in

CASES = sorted(p.name for p in FIXTURES.glob("featsharp_*.pt"))


def split_tiles(tiles: torch.Tensor, factor: int) -> torch.Tensor:
    """[B, D, uL, uL] -> [B*u*u, D, L, L] in (b, row, col) order (what a featurizer returns)."""
    b, d, n, _ = tiles.shape
    size = n // factor
    return tiles.view(b, d, factor, size, factor, size).permute(0, 2, 4, 1, 3, 5).reshape(-1, d, size, size)


@pytest.mark.parametrize("name", CASES)
def test_featurizer_path_matches_tile_features(name):
    """featurizer= receives the u*u crops (checked against the official crops where kept) and its
    outputs are assembled exactly as the given tile_features."""
    case = load_fixture(name)
    model, inputs = build_model(case), inputs_in(case, torch.float64)
    b, factor = inputs["image"].shape[0], model.upsample_factor
    seen = []

    def replay(crops):
        seen.append(crops)
        return split_tiles(inputs["tile_features"], factor)

    with torch.no_grad():
        out = model(inputs["features"], inputs["image"], model.hr_size, featurizer=replay)
    assert len(seen) == 1 and seen[0].shape == (b * factor ** 2, 3, model.model_resolution, model.model_resolution)
    if "featurizer_input" in case["intermediates"]:
        assert torch.equal(seen[0], case["intermediates"]["featurizer_input"][b:])
    assert relative_errors(out, case["output"])[0] <= 1e-9


def test_default_output_size_is_the_image_size():
    case = load_fixture("featsharp_u3_d24_b2.pt")
    model, inputs = build_model(case), inputs_in(case, torch.float64)
    with torch.no_grad():
        out = model(inputs["features"], inputs["image"], tile_features=inputs["tile_features"])
    native = torch.nn.functional.interpolate(case["output"], size=(50, 38), mode="bilinear", align_corners=False)
    assert out.shape == (2, 24, 50, 38)
    assert relative_errors(out, native)[0] <= 1e-9
    assert FeatSharp.requires_featurizer is True


def test_zero_layer_scale_returns_the_jbu_branch():
    case = load_fixture("featsharp_u4_d40.pt")
    model, inputs = build_model(case), inputs_in(case, torch.float64)
    with torch.no_grad():
        model.block.ls1.gamma.zero_()
        model.block.ls2.gamma.zero_()
        out = model(inputs["features"], inputs["image"], model.hr_size, tile_features=inputs["tile_features"])
    assert relative_errors(out, case["intermediates"]["jbu"])[0] <= 1e-9


def _dense_reference(q, k, v, radius, scale, row_slopes, col_slopes):
    """The dense masked formula over all H*W x H*W pairs (tests only)."""
    b, nh, h, w, _ = q.shape
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    dy = (ys.reshape(-1, 1) - ys.reshape(1, -1)).abs().double()
    dx = (xs.reshape(-1, 1) - xs.reshape(1, -1)).abs().double()
    logits = scale * q.reshape(b, nh, h * w, -1) @ k.reshape(b, nh, h * w, -1).transpose(-1, -2)
    logits = logits - row_slopes.view(1, -1, 1, 1) * dy - col_slopes.view(1, -1, 1, 1) * dx
    logits = logits.masked_fill((dy > radius) | (dx > radius), float("-inf"))
    return (logits.softmax(-1) @ v.reshape(b, nh, h * w, -1)).view(b, nh, h, w, -1)


def test_neighborhood_attention_matches_dense_masked_attention():
    q, k = torch.randn(2, 4, 5, 9, 8, dtype=torch.float64), torch.randn(2, 4, 5, 9, 8, dtype=torch.float64)
    v = torch.randn(2, 4, 5, 9, 3, dtype=torch.float64)
    slopes = alibi_slopes(4)
    rows, cols = slopes * torch.tensor([1.0, 0, 1, 0]), slopes * torch.tensor([0.0, 1, 0, 1])
    ours = neighborhood_attention(q, k, v, 2, 0.3, rows, cols)
    ref = _dense_reference(q, k, v, 2, 0.3, rows, cols)
    assert (ours - ref).abs().max() <= 1e-12
    no_penalty = neighborhood_attention(q, k, v, 2, 0.3)
    assert (no_penalty - _dense_reference(q, k, v, 2, 0.3, 0 * slopes, 0 * slopes)).abs().max() <= 1e-12
    with pytest.raises(ValueError, match="on one grid"):
        neighborhood_attention(q, k[:, :, :4], v, 2, 0.3)


def test_helpers():
    assert [prime_factors(n) for n in (2, 3, 4, 8, 14)] == [[2], [3], [2, 2], [2, 2, 2], [2, 7]]
    assert alibi_slopes(4).tolist() == [0.5, 0.5, 0.25, 0.25]
    assert sum(p.numel() for p in FeatSharp(384, 2, 224, 14).parameters()) - 384 * 16 * 16 == 6_893_476
    image = torch.arange(2 * 3 * 8 * 8, dtype=torch.float64).view(2, 3, 8, 8)
    crops = tile_crops(image, 4, 2)
    assert crops.shape == (8, 3, 4, 4) and torch.equal(crops[5], image[1, :, :4, 4:])


# ---------------------------------------------------------------- checkpoints


def _training_checkpoint(case: dict, spectral: bool = True, upsample_type: str = "featsharp") -> dict:
    """The official ``last.pth.tar`` layout: model_state with a DDP ``module.`` infix, training-only
    parts, upsample_args, and optimiser state."""
    upsampler = case["state_dict_spectral"] if spectral else {
        k: v for k, v in case["state_dict"].items() if k.startswith("upsampler.")}
    model_state = {k.replace("upsampler.", "upsampler.module.", 1): v for k, v in upsampler.items()}
    model_state.update({k: v for k, v in case["state_dict"].items() if not k.startswith("upsampler.")})
    model_state["downsampler.weight"] = torch.zeros(81, case["config"]["dim"], 9, 9)
    model_state["scale_net.net.0.weight"] = torch.zeros(256, case["config"]["dim"], 5, 5)
    return {"model_state": model_state, "global_step": 3000, "optimizer": {"state": {}, "param_groups": []},
            "upsample_args": {"type": upsample_type, "factor": case["config"]["upsample_factor"],
                              "normalizer": "phi-s"}}


def _build(case: dict, pretrained: str):
    cfg = case["config"]
    return build_upsampler("featsharp", dim=cfg["dim"], upsample_factor=cfg["upsample_factor"],
                           model_resolution=cfg["model_resolution"], patch_size=cfg["patch_size"],
                           no_ln=cfg["no_ln"], pretrained=pretrained)


def test_spectral_weights_bake_bitwise():
    """Baking the training layout reproduces the stored plain float32 weights bit for bit (0 ulp)."""
    case = load_fixture("featsharp_u2_d48_spectral.pt")
    baked = bake_spectral_weights(case["state_dict_spectral"])
    plain = {k: v for k, v in case["state_dict"].items() if k.startswith("upsampler.")}
    assert set(baked) == set(plain)
    for key, value in plain.items():
        assert baked[key].dtype == torch.float32 and torch.equal(baked[key], value), key
    # Skipping the single power-iteration step gives visibly different weights.
    prefix = "upsampler.ups.0.block.attn.proj.parametrizations.weight."
    spectral = case["state_dict_spectral"]
    w, u, v = spectral[prefix + "original"], spectral[prefix + "0._u"], spectral[prefix + "0._v"]
    stale = w * ((torch.nn.functional.softplus(spectral[prefix + "0.sn_scale"]) + 0.05) / (u @ w @ v + 1e-6))
    assert not torch.allclose(stale, plain["upsampler.ups.0.block.attn.proj.weight"], rtol=1e-5, atol=0)


def test_spectral_training_checkpoint_loads(tmp_path):
    """The official spectral-norm training file, baked on load, reproduces the fixture (a URL
    goes through torch.hub's cache like any other: tests/test_checkpoint_sources.py)."""
    case = load_fixture("featsharp_u2_d48_spectral.pt")
    path = tmp_path / "last.pth.tar"
    torch.save(_training_checkpoint(case), path)
    model = _build(case, str(path))
    inputs = inputs_in(case, torch.float64)
    with torch.no_grad():
        out = model.double()(inputs["features"], inputs["image"], model.hr_size, tile_features=inputs["tile_features"])
    assert relative_errors(out, case["output"])[0] <= 1e-9


@pytest.mark.parametrize("name", ["featsharp_noln_u2_d32.pt", "featsharp_u3_d24_b2.pt"])
def test_plain_training_checkpoint_and_state_dict_load(tmp_path, name):
    case = load_fixture(name)
    for content in (_training_checkpoint(case, spectral=False,
                                         upsample_type="featsharp.no-ln" if case["config"]["no_ln"] else "featsharp"),
                    case["state_dict"]):
        path = tmp_path / "ckpt.pth.tar"
        torch.save(content, path)
        model = _build(case, str(path))
        assert torch.equal(model.tile_pos, case["state_dict"]["upsampler.ups.0.tile_pos"])
        assert torch.equal(model.bias_buffer, case["state_dict"]["bias_buffer.buffer"])


def test_mismatched_checkpoints_fail_with_the_keys(tmp_path):
    case = load_fixture("featsharp_u2_d48_spectral.pt")
    path = tmp_path / "ckpt.pth.tar"
    checkpoint = _training_checkpoint(case)
    del checkpoint["model_state"]["normalizer.alpha"]
    checkpoint["model_state"]["cond_bias_transform.norm1.weight"] = torch.ones(48)
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointMismatchError, match=r"missing keys \(1\): normalizer.alpha\n"
                                                      r".*unexpected keys \(1\): cond_bias_transform.norm1.weight"):
        _build(case, str(path))
    torch.save(_training_checkpoint(case, upsample_type="featsharp.no-ln.inputs-jafar-tiles"), path)
    with pytest.raises(ValueError, match="'featsharp.no-ln.inputs-jafar-tiles' is not supported"):
        _build(case, str(path))
    torch.save(_training_checkpoint(case), path)
    with pytest.raises(ValueError, match="upsample_factor=2, got 4"):
        build_upsampler("featsharp", dim=48, upsample_factor=4, model_resolution=28, patch_size=7, pretrained=str(path))
    with pytest.raises(ValueError, match="needs no_ln=False"):
        build_upsampler("featsharp", dim=48, upsample_factor=2, model_resolution=28, patch_size=7, no_ln=True,
                        pretrained=str(path))
    with pytest.raises(CheckpointMismatchError, match=r"shape mismatches .*tile_pos: checkpoint \(1, 48, 2, 2\)"):
        build_upsampler("featsharp", dim=40, upsample_factor=2, model_resolution=28, patch_size=7, pretrained=str(path))


# ---------------------------------------------------------------- input errors


@pytest.fixture
def small_model():
    return FeatSharp(8, 2, 12, 4).eval()  # L = 3, N = 6


def test_feature_dim_must_match_the_weights(small_model):
    with pytest.raises(ValueError, match="features have 7 channels but this upsampler's weights expect 8"):
        small_model(torch.randn(1, 7, 3, 3), torch.randn(1, 3, 20, 20), tile_features=torch.randn(1, 7, 6, 6))


def test_tile_errors(small_model):
    feats, image = torch.randn(1, 8, 3, 3), torch.randn(1, 3, 20, 20)
    with pytest.raises(ValueError, match="needs exactly one of tile_features= .* or featurizer="):
        small_model(feats, image)
    with pytest.raises(ValueError, match="needs exactly one of"):
        small_model(feats, image, tile_features=torch.randn(1, 8, 6, 6), featurizer=lambda x: x)
    with pytest.raises(ValueError, match=r"tile_features must be \[B, D, N, N\] = \[1, 8, 6, 6\]"):
        small_model(feats, image, tile_features=torch.randn(1, 8, 9, 9))
    with pytest.raises(ValueError, match=r"featurizer returned \(3, 8, 3, 3\) for 4 tiles of 12x12; "
                                         r"expected \(4, 8, 3, 3\)"):
        small_model(feats, image, featurizer=lambda crops: torch.randn(3, 8, 3, 3))
    with pytest.raises(ValueError, match="dtype mismatch: tile_features"):
        small_model(feats, image, tile_features=torch.randn(1, 8, 6, 6, dtype=torch.float64))


def test_size_errors(small_model):
    with pytest.raises(ValueError, match="features must be the 3x3 grid of the featurizer at 12x12; got 4x4"):
        small_model(torch.randn(1, 8, 4, 4), torch.randn(1, 3, 20, 20), tile_features=torch.randn(1, 8, 6, 6))
    with pytest.raises(ValueError, match="at least 2x2 patches"):
        FeatSharp(8, 2, 6, 4)
    with pytest.raises(ValueError, match="fusion width 10 .* divisible by num_heads=16"):
        FeatSharp(5, 2, 12, 4)
    with pytest.raises(ValueError, match="upsample_factor must be an integer >= 2"):
        FeatSharp(8, 1, 12, 4)


def test_builder_defaults_are_a_2x_vit14_at_224():
    model = build_upsampler("featsharp", dim=32, num_heads=2)
    assert (model.upsample_factor, model.model_resolution, model.lr_size, model.hr_size) == (2, 224, 16, 32)
    assert not model.training
