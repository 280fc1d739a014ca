"""UPLiFT (parity with the official implementation: tests/test_parity.py): loading the official
file, the Local Attender against an independent per-pixel formula (values and gradients), chunked ==
unchunked, memory bound of the chunked op, checkpoint loading, precision, errors."""
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import anyup_dense.upsamplers.uplift  # noqa: F401  (registers "uplift")
from anyup_dense import build_upsampler
from anyup_dense.upsamplers import uplift_layers
from anyup_dense.checkpoints import CheckpointReadError
from anyup_dense.upsamplers.uplift import (RELEASES, UPLiFT, iterations_for, nearest, official_output_size,
                                           prescaled_size)
from anyup_dense.upsamplers.uplift_layers import (OFFSETS, local_attention, local_attention_dense,
                                                  resize_antialiased, residual_auto)
from helpers import FIXTURES, LargestTensor, load_fixture, relative_errors, serve_release
from parity_adapters import ADAPTERS, build_model, inputs_in, uplift_call, uplift_output_size

CASES = sorted(p.name for p in FIXTURES.glob("uplift_*.pt"))
RELEASED = "uplift_released_dinov2s14_c384_i2.pt"
TRAP = "uplift_p14_c16_border_nearest_trap.pt"


def run_case(case: dict, dtype: torch.dtype, **kwargs) -> torch.Tensor:
    with torch.no_grad():
        return uplift_call(build_model(case, dtype, **kwargs), inputs_in(case, dtype), case)


def test_official_safetensors_file_reproduces_the_fixture_float64(tmp_path):
    """The acceptance path: build_upsampler("uplift", pretrained=<.safetensors>, official names)
    (parity of every fixture: tests/test_parity.py)."""
    case = load_fixture("uplift_p16_c40_b2_i1.pt")
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in case["state_dict"].items()}, str(path))  # the official layout
    ctor = {k: case["config"][k] for k in ADAPTERS["uplift"].ctor_keys}
    model = build_upsampler("uplift", pretrained=path, **ctor).double()
    out = uplift_call(model, case["inputs"], case)
    assert out.dtype == torch.float64
    assert relative_errors(out, case["output"])[0] <= 1e-9  # measured 6.7e-16


def test_iteration_count_from_output_size():
    """iters=None picks 4 iterations for 3x2 -> 42x28 (48x32, then resized down), as the case did."""
    case = load_fixture("uplift_p14_c24_i4_to_image.pt")
    assert iterations_for((3, 2), uplift_output_size(case)) == 4
    out = run_case(case, torch.float64, iters=None)
    assert relative_errors(out, case["output"])[0] <= 1e-9
    assert iterations_for((32, 32), (448, 448)) == 4  # the official DINOv2 example: 512 -> 448
    assert iterations_for((28, 28), (448, 448)) == 4
    assert iterations_for((5, 3), (37, 21)) == 3
    assert iterations_for((4, 4), (4, 4)) == 1  # at least one iteration


def test_size_rules():
    assert official_output_size(10, (8, 12)) == (10, 15)  # shorter edge -> S (spec example)
    assert official_output_size(10, (12, 8)) == (15, 10)
    assert official_output_size(7, (9, 9)) == (7, 7)
    assert official_output_size(None, (8, 12)) == (8, 12)
    assert official_output_size([5, 6], (8, 12)) == (5, 6)
    assert prescaled_size((74, 42), 14) == (84, 48)
    assert prescaled_size((74, 42), 16) == (74, 42)


# ---------------------------------------------------------------- independent formulas
def test_nearest_follows_torch_float32_index_rule():
    """src(i) = min(floor(fl32(i) * fl32(n / m)), n - 1), in float32 (spec 5.1); (84 -> 20) at
    i = 15 gives 62 where the exact rational rule gives 63. Same in float64 maps."""
    for n, m in ((84, 20), (84, 40), (26, 22), (62, 14), (93, 21), (126, 30), (16, 32), (5, 5)):
        ramp = torch.arange(n, dtype=torch.float64).view(1, 1, n, 1).expand(1, 1, n, 2)
        ours = nearest(ramp, (m, 2))[0, 0, :, 0].long()
        if m == 2 * n:
            expected = np.arange(m) // 2
        else:
            scale = np.float32(n) / np.float32(m)
            expected = np.minimum(np.floor(np.arange(m, dtype=np.float32) * scale), n - 1)
        assert ours.tolist() == expected.astype(int).tolist(), (n, m)
    ramp = torch.arange(84, dtype=torch.float64).view(1, 1, 84, 1)
    assert nearest(ramp, (20, 1))[0, 0, 15, 0] == 62 != 15 * 84 // 20


def antialias_matrix(n: int, m: int) -> torch.Tensor:
    """[m, n] float64 weights of the antialiased bilinear resize (spec 5.3)."""
    s = n / m
    support, inv = (s, 1 / s) if s >= 1 else (1.0, 1.0)
    rows = torch.zeros(m, n, dtype=torch.float64)
    for i in range(m):
        c = s * (i + 0.5)
        for j in range(max(int(c - support + 0.5), 0), min(int(c + support + 0.5), n)):
            rows[i, j] = max(0.0, 1 - abs((j - c + 0.5) * inv))
    return rows / rows.sum(1, keepdim=True)


@pytest.mark.parametrize("size", [(37, 21), (13, 30), (40, 24)])
def test_resize_is_the_antialiased_triangle_filter(size):
    x = torch.randn(2, 3, 40, 24, dtype=torch.float64)
    expected = antialias_matrix(40, size[0]) @ x @ antialias_matrix(24, size[1]).T
    assert (resize_antialiased(x, size) - expected).abs().max() <= 1e-13


def test_residual_auto_keeps_the_leading_channels():
    a, b = torch.arange(4.0).view(1, 4, 1, 1), torch.full((1, 2, 1, 1), 10.0)
    assert residual_auto(a, b.clone()).flatten().tolist() == [10, 11]  # ca > cb: first cb of a
    assert residual_auto(b, torch.arange(4.0).view(1, 4, 1, 1)).flatten().tolist() == [10, 11, 2, 3]  # ca < cb
    assert residual_auto(b, b.clone()).flatten().tolist() == [20, 20]


def attention_loops(attn: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Spec 4.5 pixel by pixel: out[b,c,2y+i,2x+j] = sum_d A[b,d,2y+i,2x+j] V[b,c,clamp(y+dy),clamp(x+dx)]."""
    b, c, h, w = value.shape
    out = torch.zeros(b, c, 2 * h, 2 * w, dtype=value.dtype)
    for yy in range(2 * h):
        for xx in range(2 * w):
            for d, (dy, dx) in enumerate(OFFSETS):
                src = value[:, :, min(max(yy // 2 + dy, 0), h - 1), min(max(xx // 2 + dx, 0), w - 1)]
                out[:, :, yy, xx] += attn[:, d, yy, xx, None] * src
    return out


def random_attention(b=2, c=3, h=3, w=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    attn = torch.randn(b, 17, 2 * h, 2 * w, dtype=torch.float64, generator=generator).softmax(1)
    value = torch.randn(b, c, h, w, dtype=torch.float64, generator=generator)
    return attn.requires_grad_(), value.requires_grad_()


@pytest.mark.parametrize("budget", [1, 40, None])  # 1 row per chunk, 2 rows, all rows
def test_local_attention_matches_pixel_formula(budget):
    attn, value = random_attention()
    expected = attention_loops(attn.detach(), value.detach())
    for out in (local_attention(attn, value, budget), local_attention_dense(attn, value)):
        assert (out - expected).abs().max() <= 1e-14


def test_local_attention_gradients_match_pixel_formula():
    attn, value = random_attention(b=1, c=2, h=3, w=4, seed=1)
    weights = torch.randn(1, 2, 6, 8, dtype=torch.float64)
    ours = torch.autograd.grad((local_attention(attn, value, 20) * weights).sum(), (attn, value))
    expected = torch.autograd.grad((attention_loops(attn, value) * weights).sum(), (attn, value))
    for g, r in zip(ours, expected):
        assert (g - r).abs().max() <= 1e-14 * r.abs().max()


def test_model_chunked_equals_unchunked_with_gradients(monkeypatch):
    """Whole model, float64, several attender chunks and resize groups: output and gradients
    (features, image, every parameter) equal the official unchunked order (measured <= 3.7e-15)."""
    monkeypatch.setattr(uplift_layers, "RESIZE_GROUP_ELEMENTS", 3 * 40 * 24)  # 3 channels per group
    case = load_fixture(TRAP)
    out_size = uplift_output_size(case)
    results = []
    for chunked in (True, False):
        model = build_model(case, torch.float64, chunked=chunked, max_elements_per_chunk=500)
        features = case["inputs"]["features"].clone().requires_grad_()
        image = case["inputs"]["image"].clone().requires_grad_()
        out = model(features, image, out_size)
        weights = torch.randn(out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
        inputs = [features, image, *model.parameters()]
        results.append([out, *torch.autograd.grad((out * weights).sum(), inputs)])
    assert relative_errors(results[0][0], case["output"])[0] <= 1e-9
    for ours, ref in zip(*results):
        assert ours.abs().max() > 0
        assert (ours - ref).abs().max() <= 1e-12 * ref.abs().max()


def test_chunked_attention_never_builds_the_neighbour_product():
    """Forward and backward create no tensor larger than the output, while the official order
    builds the 17x product (memory measured at 448^2: 1.34 GiB process peak vs 9.3 GiB)."""
    attn, value = random_attention(b=1, c=24, h=4, w=6)
    grad = torch.randn(1, 24, 8, 12, dtype=torch.float64)
    sizes = []
    for op in (lambda: local_attention(attn, value, 1152), lambda: local_attention_dense(attn, value)):  # 2 chunks
        with LargestTensor() as tracker:
            torch.autograd.backward(op(), grad)
        sizes.append(tracker.largest)
    assert sizes[0] == grad.numel()
    assert sizes[1] == 17 * grad.numel()


# ---------------------------------------------------------------- precision
def test_half_precision_module_cast():
    """C=384 released architecture cast with ``.to(dtype)``: mean |error| / mean |float32 output|
    measured 3.0e-3 (bfloat16) and 8.5e-4 (float16); bounds about 2x. (The official order,
    ``chunked=False``: 3.2e-3 and 8.5e-4.)"""
    case = load_fixture(RELEASED)
    ref = run_case(case, torch.float32)
    for dtype, bound in ((torch.bfloat16, 6e-3), (torch.float16, 1.7e-3)):
        out = run_case(case, dtype)
        assert out.dtype == dtype
        error = ((out.float() - ref).abs().mean() / ref.abs().mean()).item()
        assert error <= bound, (dtype, error)


# ---------------------------------------------------------------- architecture and checkpoints
def test_released_architecture_keys():
    model = UPLiFT()
    state = model.state_dict()
    released = load_fixture(RELEASED)["state_dict"]
    assert len(state) == 72
    assert sum(p.numel() for p in model.parameters()) == 789_521
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: tuple(v.shape) for k, v in released.items()}


def test_official_file_loads_under_each_release_name_with_its_patch_size(tmp_path, monkeypatch):
    """The official safetensors files hold float32 counters; either release name loads them into
    the model's own dtypes and sets its patch size, and a contradicting patch_size is refused
    (every release's layout and cache file: tests/test_releases.py)."""
    state = load_fixture(RELEASED)["state_dict"]
    assert all(v.dtype == torch.float32 for v in state.values())  # as the official files
    for name, patch_size in (("dinov2-s14", 14), ("dinov3-splus16", 16)):
        serve_release(monkeypatch, tmp_path, RELEASES, name, state)
        model = build_upsampler("uplift", pretrained=name, progress=False)
        assert model.patch_size == patch_size
        for key, value in state.items():
            assert torch.equal(model.state_dict()[key].float(), value), key
    assert model.state_dict()["encoder.block_0.blocks.0.conv.1.num_batches_tracked"].dtype == torch.int64
    with pytest.raises(ValueError, match=r"patch_size=14 does not match release 'dinov3-splus16' \(patch_size=16\)"):
        build_upsampler("uplift", pretrained="dinov3-splus16", patch_size=14)


def test_torch_saved_state_dict_loads_too(tmp_path):
    state = load_fixture(TRAP)["state_dict"]
    torch.save(state, tmp_path / "weights.pt")
    kwargs = {k: load_fixture(TRAP)["config"][k] for k in ADAPTERS["uplift"].ctor_keys}
    model = build_upsampler("uplift", pretrained=str(tmp_path / "weights.pt"), **kwargs)
    assert torch.equal(model.state_dict()["attender.conv1.weight"], state["attender.conv1.weight"])


def test_checkpoint_source_errors(tmp_path):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes((8).to_bytes(8, "little") + b"{not json")
    with pytest.raises(CheckpointReadError, match=r"could not read checkpoint file .*broken.safetensors\. \(safetensors: "):
        build_upsampler("uplift", pretrained=str(broken))
    with pytest.raises(FileNotFoundError, match=r"'nope' is neither a release name \(releases: 'dinov2-s14', "
                                                r"'dinov3-splus16'\), a URL, nor an existing file"):
        build_upsampler("uplift", pretrained="nope")
    with pytest.raises(ValueError, match="pretrained=3: expected True, a release name"):
        build_upsampler("uplift", pretrained=3)
    assert build_upsampler("uplift", pretrained=False, in_channels=8, encoder_hc=[4] * 5,
                           decoder_hc=[8, 8]).expected_channels == 8


# ---------------------------------------------------------------- errors and input rules
@pytest.mark.parametrize("kwargs, message", [
    (dict(encoder_hc=(16, 32, 64, 128)), r"encoder_hc must hold 5 positive widths, got \[16, 32, 64, 128\]"),
    (dict(decoder_hc=(64, 32)), r"decoder_hc must hold 2 equal positive widths, got \[64, 32\]"),
    (dict(iters=0), r"iters must be None or an int >= 1, got 0"),
    (dict(in_channels=0), r"in_channels and patch_size must be positive"),
])
def test_constructor_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        UPLiFT(**kwargs)


def test_forward_errors():
    model = UPLiFT(in_channels=8, encoder_hc=[4] * 5, decoder_hc=[8, 8])
    with pytest.raises(ValueError, match="features have 6 channels but this upsampler's weights expect 8"):
        model(torch.randn(1, 6, 2, 2), torch.randn(1, 3, 28, 28))
    with pytest.raises(ValueError, match=r"attn must have shape \(1, 17, 4, 4\)"):
        local_attention(torch.rand(1, 17, 4, 5), torch.randn(1, 3, 2, 2))
    out = model.eval()(torch.randn(1, 8, 1, 1), torch.randn(1, 3, 14, 14), (3, 5))  # 1x1 features work
    assert out.shape == (1, 8, 3, 5) and torch.isfinite(out).all()
