"""JAFAR: official checkpoints, chunked attention (parity with the official code: tests/test_parity.py)."""
import collections
import os
import pathlib
import sys

import pytest
import torch
import torch.nn.functional as F

import anyup_dense.upsamplers.jafar  # noqa: F401  (registers "jafar")
from anyup_dense import build_upsampler
from anyup_dense.checkpoints import CheckpointMismatchError, CheckpointReadError
from anyup_dense.upsamplers.jafar import JAFAR, RELEASES, OmegaConfStandIn
from anyup_dense.upsamplers.jafar_layers import global_attention
from helpers import LargestTensor, load_fixture, serve_release

RELEASED = "jafar_released_v384_down.pt"


def test_released_architecture_keys():
    """The default constructor has the 65 official tensors (628,480 values) of the released
    C=384 checkpoints; the weights the official output never uses are not trainable."""
    model = JAFAR()
    state = model.state_dict()
    released = load_fixture(RELEASED)["state_dict"]
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: tuple(v.shape) for k, v in released.items()}
    assert len(state) == 65 and sum(v.numel() for v in state.values()) == 628_480
    frozen = set(state) - {name for name, _ in model.named_parameters()}
    prefix = "cross_decode.cross_attn."
    assert frozen == {prefix + k for k in ("norm_v.weight", "attention.v_proj_weight", "attention.out_proj.weight",
                                           "attention.out_proj.bias")}


def test_packed_projection_layout_when_v_dim_equals_qk_dim():
    state = JAFAR(qk_dim=32, v_dim=32, num_heads=8).state_dict()
    assert len(state) == 63
    assert state["cross_decode.cross_attn.attention.in_proj_weight"].shape == (96, 32)
    assert not any(k.endswith(("q_proj_weight", "k_proj_weight", "v_proj_weight")) for k in state)


def test_output_is_convex_combination_of_features():
    """Raw features are the values: a global scale passes through (keys see normalised
    features), every output lies within the features' per-channel range."""
    model = JAFAR(qk_dim=16, v_dim=5, num_heads=2).eval()
    feats, image = torch.randn(1, 5, 4, 6), torch.randn(1, 3, 28, 42)
    with torch.no_grad():
        out, scaled = model(feats, image), model(2.5 * feats, image)
    assert out.shape == (1, 5, 28, 42)
    torch.testing.assert_close(scaled, 2.5 * out, rtol=1e-5, atol=1e-5)
    assert out.amax(dim=(2, 3)).le(feats.amax(dim=(2, 3)) + 1e-5).all()
    assert out.amin(dim=(2, 3)).ge(feats.amin(dim=(2, 3)) - 1e-5).all()


# --- chunked attention: values, gradients, memory -------------------------------------------

def _dense_reference(q, k, v):
    """The official formula: per-head softmax, mean over heads, applied to the values."""
    return v @ (q @ k.transpose(-1, -2)).softmax(-1).mean(1).transpose(1, 2)


@pytest.mark.parametrize("chunk", [1, 7, 60, None])
def test_chunked_attention_values_and_gradients_match_dense_autograd(chunk):
    """Forward and all three gradients of the chunked op (its own backward, recomputing each
    chunk) equal plain autograd through the dense formula, float64, for chunks that do and
    do not divide the 60 query pixels."""
    torch.manual_seed(2)
    q, k, v = (torch.randn(shape, dtype=torch.float64, requires_grad=True)
               for shape in ((2, 3, 60, 4), (2, 3, 11, 4), (2, 5, 11)))
    weight = torch.randn(2, 5, 60, dtype=torch.float64)
    out = global_attention(q, k, v, max_pixels_per_chunk=chunk)
    expected = _dense_reference(q, k, v)
    torch.testing.assert_close(out, expected, rtol=1e-13, atol=1e-15)
    grads = torch.autograd.grad((out * weight).sum(), (q, k, v))
    expected_grads = torch.autograd.grad((expected * weight).sum(), (q, k, v))
    for ours, ref in zip(grads, expected_grads):
        torch.testing.assert_close(ours, ref, rtol=1e-11, atol=1e-14)


def test_model_gradients_chunked_equal_dense():
    """Through the whole model: gradients for features, image and every parameter agree."""
    torch.manual_seed(3)
    dense = JAFAR(qk_dim=16, v_dim=6, num_heads=2, kernel_size=3, backend="dense").double()
    chunked = JAFAR(qk_dim=16, v_dim=6, num_heads=2, kernel_size=3, max_pixels_per_chunk=100).double()
    chunked.load_state_dict(dense.state_dict())
    feats = torch.randn(1, 6, 4, 5, dtype=torch.float64)
    image = torch.randn(1, 3, 24, 30, dtype=torch.float64)
    weight = torch.randn(1, 6, 18, 22, dtype=torch.float64)
    grads = []
    for model in (dense, chunked):
        f, im = feats.clone().requires_grad_(), image.clone().requires_grad_()
        out = model(f, im, output_size=(18, 22))
        (out * weight).sum().backward()
        grads.append([f.grad, im.grad] + [p.grad for p in model.parameters()])
    for g_dense, g_chunked in zip(*grads):
        torch.testing.assert_close(g_chunked, g_dense, rtol=1e-10, atol=1e-13)
    assert chunked.rope.freqs.grad.abs().sum() > 0


def test_chunked_attention_memory_is_bounded_in_forward_and_backward():
    """16x16 queries, 8x8 keys, 2 heads of 16: the dense logits hold 32,768 elements; chunks
    of 32 pixels never create a tensor larger than the queries themselves (8,192) in either pass."""
    q = torch.randn(1, 2, 256, 16, requires_grad=True)
    k = torch.randn(1, 2, 64, 16, requires_grad=True)
    v = torch.randn(1, 3, 64, requires_grad=True)
    with LargestTensor() as probe:
        global_attention(q, k, v, max_pixels_per_chunk=32).sum().backward()
    assert probe.largest == q.numel()
    with LargestTensor() as dense_probe:
        global_attention(q, k, v, dense=True).sum().backward()
    assert dense_probe.largest == 2 * 256 * 64


# --- dtypes ---------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=["default", "fixture"])
def float32_case(request):
    """The released architecture at C=384 (default init under seed 0, or the fixture's
    sharper weights), fixed inputs, and its float32 output."""
    torch.manual_seed(0)
    model = JAFAR().eval()
    if request.param == "fixture":
        model.load_state_dict(load_fixture(RELEASED)["state_dict"])
    features, image = torch.randn(1, 384, 6, 6), torch.randn(1, 3, 42, 42)
    with torch.no_grad():
        return request.param, model, features, image, model(features, image)


# Mean relative error of the module cast to bf16/fp16 vs float32 (features [1,384,6,6],
# image 42x42), measured over seeds 0-3: default init bf16 8.1e-3..8.8e-3, fp16
# 1.0e-3..1.1e-3; fixture weights (sharper attention, large RoPE frequencies) bf16
# 3.4e-2..3.6e-2, fp16 4.4e-3..4.5e-3. The error is spread over the full-resolution encoders
# (RoPE or attention in float32 remove under 10% of it). Bounds: about 2x the measurement.
BOUNDS = {("default", torch.bfloat16): 0.02, ("default", torch.float16): 0.0025,
          ("fixture", torch.bfloat16): 0.07, ("fixture", torch.float16): 0.009}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_module_error(float32_case, dtype):
    weights, model, features, image, ref = float32_case
    low = JAFAR().eval()
    low.load_state_dict(model.state_dict())
    with torch.no_grad():
        out = low.to(dtype)(features.to(dtype), image.to(dtype))
    assert out.dtype == dtype
    error = ((out.float() - ref).abs().mean() / ref.abs().mean()).item()
    assert error < BOUNDS[weights, dtype], error


@pytest.mark.filterwarnings("ignore:Mismatch dtype between input and weight")  # RMSNorm: bf16 input, f32 weight
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_training_step_under_cpu_autocast(dtype):
    """Forward and the chunked backward under autocast (projected q/k in low precision, raw
    features in float32); gradients close to float32's. Measured worst tensor: 3.7e-2 (bf16),
    4.8e-3 (fp16)."""
    torch.manual_seed(0)
    model = JAFAR(qk_dim=32, v_dim=24, num_heads=2).train()
    features = torch.randn(1, 24, 6, 6, requires_grad=True)
    image, target = torch.randn(1, 3, 30, 30), torch.randn(1, 24, 30, 30)

    def grads(autocast: bool):
        with torch.autocast("cpu", dtype=dtype, enabled=autocast):
            loss = F.mse_loss(model(features, image).float(), target)
        return torch.autograd.grad(loss, (features, *model.parameters()))

    low, ref = grads(True), grads(False)
    rel = max(((a - b).norm() / b.norm()).item() for a, b in zip(low, ref))
    assert rel < (0.08 if dtype == torch.bfloat16 else 0.01), rel


# --- official checkpoints -------------------------------------------------------------------

def _omegaconf_cfg(v_dim: int):
    """A Hydra-style config as the official train.py pickles it (a genuine DictConfig)."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({
        "model": {"name": "jafar", "input_dim": 3, "qk_dim": 128, "v_dim": v_dim, "feature_dim": "${model.v_dim}",
                  "kernel_size": 1, "num_heads": 4},
        "backbone": {"name": "vit_small_patch14_dinov2.lvd142m"},
        "optimizer": {"lr": 2e-4, "weight_decay": 1e-5}, "scales": [0.25, 0.5],
        "img_size": 448, "bf16": True, "resume": None, "seed": 0,
    })
    OmegaConf.set_struct(cfg, True)
    return cfg


def official_checkpoint(state_dict: dict, cfg=None) -> dict:
    """The official training dict: model, AdamW state after one step, epoch, pickled cfg."""
    params = [t.clone().requires_grad_() for t in state_dict.values()]
    optimizer = torch.optim.AdamW(params, lr=2e-4, weight_decay=1e-5)
    for p in params:
        p.grad = torch.ones_like(p)
    optimizer.step()
    v_dim = state_dict["key_features_encoder.0.weight"].shape[1]
    return {"jafar": state_dict, "optimizer_jafar": optimizer.state_dict(), "epoch": 3,
            "cfg": _omegaconf_cfg(v_dim) if cfg is None else cfg}


def write_official_checkpoint(path: pathlib.Path, state_dict: dict, cfg=None) -> pathlib.Path:
    torch.save(official_checkpoint(state_dict, cfg), path)
    return path


def _block_omegaconf(monkeypatch):
    """Make ``import omegaconf`` fail: loading must not need it."""
    for name in [n for n in sys.modules if n == "omegaconf" or n.startswith("omegaconf.")] + ["omegaconf"]:
        monkeypatch.setitem(sys.modules, name, None)


def test_official_checkpoint_loads_by_release_name_without_omegaconf(tmp_path, monkeypatch):
    """A training dict with a pickled OmegaConf cfg, served under a release name, loads strictly
    without omegaconf (the cfg becomes inert stand-ins) and takes the width from the checkpoint
    (every release's layout and cache file: tests/test_releases.py)."""
    case = load_fixture(RELEASED)
    serve_release(monkeypatch, tmp_path, RELEASES, "vit_small_patch14_dinov2.lvd142m",
                  official_checkpoint(case["state_dict"]))
    _block_omegaconf(monkeypatch)
    model = build_upsampler("jafar", pretrained="vit_small_patch14_dinov2.lvd142m", progress=False)
    assert model.expected_channels == 384
    for key, value in case["state_dict"].items():
        assert torch.equal(model.state_dict()[key], value), key


def test_pickled_config_becomes_inert_stand_ins(tmp_path, monkeypatch):
    from anyup_dense.checkpoints import load_checkpoint
    from anyup_dense.upsamplers.jafar import CHECKPOINT_SAFE_GLOBALS

    path = write_official_checkpoint(tmp_path / "ckpt.pth", load_fixture(RELEASED)["state_dict"])
    _block_omegaconf(monkeypatch)
    checkpoint = load_checkpoint(str(path), RELEASES, safe_globals=CHECKPOINT_SAFE_GLOBALS)
    cfg = checkpoint["cfg"]
    assert type(cfg) is OmegaConfStandIn
    model_cfg = cfg.state["_content"]["model"]
    assert type(model_cfg) is OmegaConfStandIn
    assert model_cfg.state["_content"]["num_heads"].state["_val"] == 4
    assert checkpoint["epoch"] == 3 and "state" in checkpoint["optimizer_jafar"]


class _Exploit:
    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


@pytest.mark.parametrize("cfg", ["exploit", "namespace", "defaultdict_with_other_factory"])
def test_checkpoint_pickling_anything_else_is_refused(tmp_path, cfg):
    """Only the omegaconf classes map to stand-ins; any other global is refused before it runs."""
    import argparse

    marker = tmp_path / "pwned"
    cfgs = {"exploit": _Exploit(marker), "namespace": argparse.Namespace(lr=2e-4),
            "defaultdict_with_other_factory": collections.defaultdict(os.getcwd)}
    path = write_official_checkpoint(tmp_path / "evil.pth", load_fixture(RELEASED)["state_dict"], cfg=cfgs[cfg])
    with pytest.raises(CheckpointReadError, match="(?i)unsupported global"):
        build_upsampler("jafar", pretrained=str(path))
    assert not marker.exists()


def test_packed_layout_plain_state_dict_from_path(tmp_path):
    """A bare state_dict (no training dict) in the packed C == Q layout; width inferred."""
    case = load_fixture("jafar_vq32_h8_w1.pt")
    path = tmp_path / "packed.pth"
    torch.save(case["state_dict"], path)
    model = build_upsampler("jafar", pretrained=path, qk_dim=32, num_heads=8)
    assert model.expected_channels == 32
    for key, value in case["state_dict"].items():
        assert torch.equal(model.state_dict()[key], value), key


def test_checkpoint_mismatch_lists_keys(tmp_path):
    state = dict(load_fixture(RELEASED)["state_dict"])
    del state["rope.freqs"]
    state["extra.weight"] = torch.zeros(1)
    path = write_official_checkpoint(tmp_path / "bad.pth", state)
    with pytest.raises(CheckpointMismatchError) as info:
        build_upsampler("jafar", pretrained=str(path), v_dim=768)
    message = str(info.value)
    assert "missing keys (1): rope.freqs" in message
    assert "unexpected keys (1): extra.weight" in message
    assert "key_features_encoder.0.weight: checkpoint (128, 384, 1, 1) vs model (128, 768, 1, 1)" in message
    assert "cross_decode.cross_attn.norm_v.weight: checkpoint (384,) vs model (768,)" in message


def test_release_names_follow_the_files():
    """The two ViT-B/16 README labels are swapped; names follow the files (see RELEASES)."""
    base = "https://github.com/PaulCouairon/JAFAR/releases/download/Weights/"
    assert next(iter(RELEASES)) == "vit_small_patch14_dinov2.lvd142m"
    assert RELEASES["vit_base_patch16_224.dino"].url == base + "vit_base_patch16_224.dino.pth"
    assert RELEASES["vit_base_patch16_224"].url == base + "vit_base_patch16_224.pth"
    assert all(release.url == f"{base}{name}.pth" for name, release in RELEASES.items())


# --- input contract -------------------------------------------------------------------------

def test_feature_channels_must_match_v_dim():
    model = JAFAR(qk_dim=16, v_dim=8, num_heads=2)
    with pytest.raises(ValueError, match="features have 7 channels but this upsampler's weights expect 8"):
        model(torch.randn(1, 7, 4, 4), torch.randn(1, 3, 16, 16))


def test_wrong_guidance_channels():
    model = JAFAR(input_dim=4, qk_dim=16, v_dim=8, num_heads=2)
    with pytest.raises(ValueError, match="image must have 4 channels"):
        model(torch.randn(1, 8, 4, 4), torch.randn(1, 3, 16, 16))


def test_image_too_small_for_reflect_padding():
    model = JAFAR(qk_dim=16, v_dim=4, num_heads=2, kernel_size=5)
    with pytest.raises(ValueError, match=r"image \(2x2\) must be larger than kernel_size // 2 = 2"):
        model(torch.randn(1, 4, 2, 2), torch.randn(1, 3, 2, 2))


@pytest.mark.parametrize("kwargs, message", [
    ({"qk_dim": 20}, "qk_dim must be a multiple of 8"),
    ({"qk_dim": 32, "num_heads": 3}, r"qk_dim must be a multiple of 8 .* and of num_heads \(3\)"),
    ({"kernel_size": 2}, "kernel_size must be odd"),
    ({"backend": "flash"}, "backend must be one of"),
    ({"max_pixels_per_chunk": 0}, "max_pixels_per_chunk must be None or a positive integer"),
])
def test_invalid_configuration(kwargs, message):
    with pytest.raises(ValueError, match=message):
        JAFAR(**kwargs)
