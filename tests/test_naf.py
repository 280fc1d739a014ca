"""NAF (parity with the official code: tests/test_parity.py): NATTEN's window rule against an independent
dense formula (values and gradients), chunking, checkpoint loading, errors."""

import pytest
import torch
import torch.nn.functional as F

import anyup_dense.upsamplers.naf  # noqa: F401  (registers "naf")
from anyup_dense import build_upsampler
from anyup_dense.ops.neighborhood_attention_dilated import (cross_scale_neighborhood_attention,
                                                            cross_scale_neighbors, natten_neighbors,
                                                            nearest_exact_index)
from anyup_dense.upsamplers.naf import NAF, guidance_size
from helpers import FIXTURES, load_fixture, relative_errors
from parity_adapters import ADAPTERS, build_model

CASES = sorted(p.name for p in FIXTURES.glob("naf_*.pt"))
RELEASED = "naf_released_c12_nonint.pt"


# ---------------------------------------------------------------- independent dense formula
def natten_windows_reference(length: int, kernel: int, dilation: int) -> torch.Tensor:
    """[length, kernel] neighbour positions, from NATTEN >= 0.20's description: within the
    query's dilation group (positions r, r + d, ...), the window centre is the query's own
    index in the group, clamped to [k // 2, group size - 1 - k // 2]."""
    rows = []
    for i in range(length):
        group = list(range(i % dilation, length, dilation))
        centre = min(max(group.index(i), kernel // 2), len(group) - 1 - kernel // 2)
        rows.append(group[centre - kernel // 2:centre + kernel // 2 + 1])
    return torch.tensor(rows)


def nearest_exact_reference(in_len: int, out_len: int) -> torch.Tensor:
    """Exact rational rule min(floor((i + 0.5) in / out), in - 1), in integers."""
    return torch.tensor([min((2 * i + 1) * in_len // (2 * out_len), in_len - 1) for i in range(out_len)])


def dense_reference(q, k, v, kernel: int, scale: float):
    """Float64 masked dense attention on the enlarged (Ho, Wo) grid.

    q [B,n,Ho,Wo,d], k [B,n,h,w,d], v [B,n,h,w,dv] -> (out [B,n,Ho,Wo,dv], probabilities of the
    window entries [B,n,Ho,Wo,k*k] in NATTEN's order a*k + c).
    """
    (ho, wo), (h, w) = q.shape[2:4], k.shape[2:4]
    nn_h, nn_w = nearest_exact_reference(h, ho), nearest_exact_reference(w, wo)
    k_up, v_up = (x[:, :, nn_h][:, :, :, nn_w] for x in (k, v))  # [B, n, Ho, Wo, *]
    win_h = natten_windows_reference(ho, kernel, ho // h)
    win_w = natten_windows_reference(wo, kernel, wo // w)
    in_h = torch.zeros(ho, ho, dtype=torch.bool).scatter_(1, win_h, True)
    in_w = torch.zeros(wo, wo, dtype=torch.bool).scatter_(1, win_w, True)
    mask = (in_h[:, None, :, None] & in_w[None, :, None, :]).reshape(ho * wo, ho * wo)
    logits = torch.einsum("bnqd,bnkd->bnqk", q.flatten(2, 3), k_up.flatten(2, 3)) * scale
    probs = logits.masked_fill(~mask, float("-inf")).softmax(-1)
    out = (probs @ v_up.flatten(2, 3)).unflatten(2, (ho, wo))
    grid = probs.view(*probs.shape[:2], ho, wo, ho, wo)
    rows = win_h[:, None, :, None].expand(ho, wo, kernel, kernel)
    cols = win_w[None, :, None, :].expand(ho, wo, kernel, kernel)
    window = grid[:, :, torch.arange(ho)[:, None, None, None], torch.arange(wo)[None, :, None, None], rows, cols]
    return out, window.flatten(-2)


# ---------------------------------------------------------------- parity with the fixtures


@pytest.mark.parametrize("name", CASES)
def test_index_tables_follow_the_independent_rules_at_fixture_sizes(name):
    """At each fixture's sizes, the nearest-exact source indices and NATTEN's windows equal the
    exact rational rule and the window rule written out above (the fixtures' own index tables are
    compared in tests/test_parity.py)."""
    case = load_fixture(name)
    cfg, (h, w) = case["config"], case["inputs"]["features"].shape[-2:]
    kernel = cfg["kernel_size"]
    for out_len, in_len in ((cfg["output_size"][0], h), (cfg["output_size"][1], w)):
        nn_index = nearest_exact_index(in_len, out_len, torch.float64)
        windows = natten_neighbors(out_len, kernel, out_len // in_len)
        assert torch.equal(nn_index, nearest_exact_reference(in_len, out_len))
        assert torch.equal(windows, natten_windows_reference(out_len, kernel, out_len // in_len))
        assert torch.equal(cross_scale_neighbors(in_len, out_len, kernel, torch.float64), nn_index[windows])


# ---------------------------------------------------------------- the attention op
SHAPES = [  # (h, w, Ho, Wo, kernel, heads, d, dv): shifted borders, dilation 1 and > 1, non-integer ratios
    (6, 5, 17, 23, 5, 1, 4, 1),
    (12, 9, 12, 27, 3, 2, 8, 3),
    (4, 3, 13, 19, 3, 2, 4, 5),
    (10, 11, 23, 34, 9, 1, 6, 2),
    (5, 7, 15, 7, 5, 3, 4, 2),
]


def random_qkv(h, w, ho, wo, heads, d, dv, batch=2):
    generator = torch.Generator().manual_seed(h * 1000 + ho)
    shapes = ((batch, heads, ho, wo, d), (batch, heads, h, w, d), (batch, heads, h, w, dv))
    return [(2 * torch.randn(s, generator=generator, dtype=torch.float64)).requires_grad_() for s in shapes]


@pytest.mark.parametrize("shape", SHAPES)
def test_attention_matches_dense_natten_formula(shape):
    """Values and gradients (q, k, v) of the chunked op equal the dense masked formula."""
    h, w, ho, wo, kernel, heads, d, dv = shape
    q, k, v = random_qkv(h, w, ho, wo, heads, d, dv)
    weights = torch.randn(2, heads, ho, wo, dv, dtype=torch.float64)
    ours = cross_scale_neighborhood_attention(q, k, v, kernel, max_pixels_per_chunk=256)
    ref, _ = dense_reference(q, k, v, kernel, d ** -0.5)
    assert (ours - ref).abs().max() <= 1e-13 * ref.abs().max()
    grads = torch.autograd.grad((ours * weights).sum(), (q, k, v))
    ref_grads = torch.autograd.grad((ref * weights).sum(), (q, k, v))
    for name, g, r in zip("qkv", grads, ref_grads):
        assert (g - r).abs().max() <= 1e-12 * r.abs().max(), name


def test_repeated_low_res_rows_count_twice():
    """At h=10 -> Ho=23 (k=9, d=2) query row 22 sees low-res rows 2..8, 8, 9: row 8 twice (spec example)."""
    rows = cross_scale_neighbors(10, 23, 9, torch.float32)
    assert rows[22].tolist() == [2, 3, 4, 5, 6, 7, 8, 8, 9]
    assert rows[8].tolist() == [0, 1, 1, 2, 3, 4, 5, 6, 7]


def test_nearest_index_follows_torch_float32_rounding():
    """(4, 41): torch's float32 index differs from the exact rule; ours follows torch's."""
    in_len, out_len = 4, 41
    scale = torch.tensor(in_len / out_len, dtype=torch.float32)
    float32_rule = ((torch.arange(out_len, dtype=torch.float32) + 0.5) * scale).floor().long().clamp(max=in_len - 1)
    ours = nearest_exact_index(in_len, out_len, torch.float32)
    assert torch.equal(ours, float32_rule)
    assert not torch.equal(ours, nearest_exact_reference(in_len, out_len))


@pytest.mark.parametrize("chunk", [12, 100])
def test_chunked_equals_unchunked(chunk):
    """Forward and backward do not depend on the chunking beyond rounding (measured <= 7.2e-16
    relative to the largest element in float64)."""
    q, k, v = random_qkv(6, 5, 17, 23, 4, 8, 3)
    results = []
    for max_pixels in (chunk, 10 ** 9):
        out = cross_scale_neighborhood_attention(q, k, v, 5, max_pixels_per_chunk=max_pixels)
        results.append([out, *torch.autograd.grad(out.square().sum(), (q, k, v))])
    for ours, ref in zip(*results):
        assert (ours - ref).abs().max() <= 1e-14 * ref.abs().max()


def test_model_gradients_match_dense_formula():
    """Backward through the whole model (encoder parameters, features) equals the same model
    with the dense formula in place of the chunked op."""
    case = load_fixture("naf_c1_b2_h1_k5.pt")
    model = build_model(case, torch.float64, max_pixels_per_chunk=16)
    feats = case["inputs"]["features"].clone().requires_grad_()
    image, out_size = case["inputs"]["image"], tuple(case["config"]["output_size"])
    weights = torch.randn(feats.shape[0], feats.shape[1], *out_size, dtype=torch.float64)
    params = [feats, *model.parameters()]
    ours = torch.autograd.grad((model(feats, image, out_size) * weights).sum(), params)
    queries = model.queries(image, out_size)
    keys = F.adaptive_avg_pool2d(queries, feats.shape[-2:])
    ref, _ = dense_reference(model._heads(queries), model._heads(keys), model._heads(feats), model.kernel_size,
                             (model.dim // model.heads_attn) ** -0.5)
    ref = ref.permute(0, 1, 4, 2, 3).reshape(weights.shape)
    expected = torch.autograd.grad((ref * weights).sum(), params)
    for g, r in zip(ours, expected):
        assert (g - r).abs().max() <= 1e-10 * r.abs().max().clamp(min=1e-30)
    assert all(g.abs().max() > 0 for g in ours)


def test_checkpointed_encoder_gives_identical_gradients():
    case = load_fixture("naf_c6_k3_layers1_b2.pt")
    image, out_size = case["inputs"]["image"], tuple(case["config"]["output_size"])
    grads = []
    for flag in (False, True):
        model = build_model(case, torch.float64, checkpoint_encoder=flag)
        feats = case["inputs"]["features"].clone().requires_grad_()
        out = model(feats, image, out_size)
        grads.append(torch.autograd.grad(out.square().sum(), [feats, *model.parameters()]))
    for plain, recomputed in zip(*grads):
        assert torch.equal(plain, recomputed)


def test_rope_rescale_only_in_training():
    case = load_fixture("naf_c9_h3_k7_preresize.pt")
    model = build_model(case, torch.float64)
    feats, image = case["inputs"]["features"], case["inputs"]["image"]
    with torch.no_grad():
        model.train()
        trained = model(feats, image, (16, 9))
        model.eval()
        evaluated = model(feats, image, (16, 9))
    assert relative_errors(evaluated, case["output"])[0] <= 1e-9
    assert relative_errors(trained, case["output"])[0] > 1e-3


# ---------------------------------------------------------------- architecture and checkpoints
def test_released_architecture_keys_and_periods():
    """NAF() has the 37 official keys / shapes, 662,528 parameters, and computes the same float32
    ``periods`` as the official constructor (bitwise equal to the default-periods fixture)."""
    model = NAF()
    state = model.state_dict()
    released = load_fixture(RELEASED)["state_dict"]
    assert len(state) == 37
    assert sum(p.numel() for p in model.parameters()) == 662_528
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: tuple(v.shape) for k, v in released.items()}
    assert torch.equal(model.image_encoder.rope.periods, released["image_encoder.rope.periods"])
    assert len(NAF(dim=32, heads_attn=2, heads_rope=1, kernel_size=3, img_layers=1).state_dict()) == 21


@pytest.mark.parametrize("name", [n for n in CASES if n != RELEASED])
def test_build_with_official_constructor_names_from_path(tmp_path, name):
    case = load_fixture(name)
    path = tmp_path / "naf_release.pth"
    torch.save(case["state_dict"], path)  # the official format: a flat state_dict
    kwargs = {k: case["config"][k] for k in ADAPTERS["naf"].ctor_keys}
    model = build_upsampler("naf", pretrained=str(path), **kwargs).double()
    inputs = case["inputs"]
    with torch.no_grad():
        out = model(inputs["features"], inputs["image"], tuple(case["config"]["output_size"]))
    assert relative_errors(out, case["output"])[0] <= 1e-9


# ---------------------------------------------------------------- errors and input rules
def test_pre_resize_caps_both_sides_by_the_smaller_output_side():
    assert guidance_size((90, 40), (16, 9)) == (36, 36)
    assert guidance_size((64, 36), (16, 9)) == (64, 36)  # no side above 4x: unchanged
    assert guidance_size((40, 200), (10, 20)) == (40, 40)


SMALL = dict(dim=32, heads_attn=2, heads_rope=2, kernel_size=3)


@pytest.mark.parametrize("feats_shape, out_size, message", [
    ((1, 4, 6, 6), (5, 12), r"output_size \(5, 12\) is smaller than the features \(6x6\) in height"),
    ((1, 5, 6, 6), (12, 12), r"features have 5 channels.*divisible by 2"),
    ((1, 4, 4, 2), (8, 5), r"output width 5 must be >= kernel_size \* \(5 // 2\) = 6"),
    ((1, 4, 2, 4), (5, 8), r"output height 5 must be >= kernel_size \* \(5 // 2\) = 6"),
])
def test_forward_errors(feats_shape, out_size, message):
    model = NAF(**SMALL)
    with pytest.raises(ValueError, match=message):
        model(torch.randn(feats_shape), torch.randn(1, 3, 24, 24), out_size)


@pytest.mark.parametrize("kwargs, message", [
    (dict(dim=40), r"dim must be divisible by 16"),
    (dict(dim=48, heads_rope=8), r"divisible by 4 \* heads_rope \(32\)"),
    (dict(heads_attn=3), r"divisible by heads_attn \(3\)"),
    (dict(kernel_size=4), r"kernel_size must be odd"),
    (dict(use_encoder=False), r"use_encoder=False is not supported"),
])
def test_constructor_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NAF(**kwargs)
