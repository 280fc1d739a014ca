"""The parity harness: every fixture of tests/fixtures/ against our upsampler of the same ``method``.

A fixture (format: tests/fixtures/README.md) holds ``method``, ``config``, ``state_dict``,
``inputs``, ``output`` and ``intermediates``. :func:`check_parity` rebuilds the model through the
method's :class:`Adapter`, runs it on the inputs in float64 or float32 and compares the output (and
whatever the adapter's fit recorded on the way) with the fixture, at the tolerances of
:data:`TOLERANCES`. :func:`check_pieces` compares the intermediates an adapter can recompute.

A method without an entry in :data:`ADAPTERS` gets the default adapter: its registered builder
with the whole ``config`` except ``output_size`` as keyword arguments, a strict
``load_state_dict(state_dict)``, and ``up(inputs['features'], inputs['image'],
config.get('output_size'))``; its tolerances are the common ones. A new upsampler therefore only
needs a fixture in that format; a method whose fixture is laid out differently adds an adapter.
"""
import math
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from anyup_dense import build_upsampler, list_upsamplers
from anyup_dense.checkpoints import Release, load_state_dict_strict, load_weights, releases
from anyup_dense.ops.neighborhood_attention_dilated import cross_scale_neighbors, natten_neighbors, nearest_exact_index
from anyup_dense.ops.window_attention import dense_window_mask, window_attention_reference
from anyup_dense.upsamplers import featup_implicit_layers as implicit_layers
from anyup_dense.upsamplers import upsample_anything_kernel as upa_kernel
from anyup_dense.upsamplers.featsharp import low_res_views, tile_crops
from anyup_dense.upsamplers.featsharp_checkpoint import convert_official_state_dict as featsharp_official_keys
from anyup_dense.upsamplers.featup_implicit import fit_model
from anyup_dense.upsamplers.featup_jbu import convert_official_state_dict as featup_jbu_official_keys
from anyup_dense.upsamplers.naf import guidance_size
from anyup_dense.upsamplers.base import Upsampler
from anyup_dense.upsamplers.uplift import nearest, official_output_size
from helpers import relative_errors

F64, F32 = torch.float64, torch.float32


# ---------------------------------------------------------------- tolerances


@dataclass(frozen=True)
class Tolerance:
    """Limits of one precision. ``rel_max`` / ``rel_norm``: output and intermediates (worst
    element / norm of the difference, relative to the reference's max / norm); ``scalar``: relative
    error of losses and learning rates; ``grad``: max |difference| of a gradient relative to the
    case's largest |gradient|; ``param``: absolute error of fitted parameters."""
    rel_max: float
    rel_norm: float = math.inf
    scalar: float = 1e-9
    grad: float = 1e-9
    param: float = 1e-9


# The limits of tests/fixtures/README.md ("Tolerances" and each method's section).
# float64 everywhere: rel_max 1e-9. float32: rel_max 1e-4 and rel_norm 1e-5 unless stated.
COMMON = {F64: Tolerance(1e-9), F32: Tolerance(1e-4, 1e-5)}
# "measured": our worst case on the shared fixtures over every variant (this CPU, 2 threads); the float64
# intermediates of every method measured <= 6e-15 (Upsample Anything's gradients 9.2e-15).
TOLERANCES: Dict[str, Dict[torch.dtype, Tolerance]] = {
    "anyup": COMMON,  # measured f64 rel_max 9.8e-16; f32 rel_max 2.1e-6, rel_norm 1.2e-6
    "featup_jbu": COMMON,  # measured f64 1.2e-15; f32 5.8e-7, 1.7e-7
    "featsharp": COMMON,  # measured f64 6.4e-16; f32 4.1e-7, 2.9e-7
    "jafar": COMMON,  # measured f64 6.6e-15; f32 3.0e-6, 9.0e-7
    # The README's float32 limits for LoftUp are 3e-2 / 1e-2 (the official float32 code reaches
    # 2.2e-3 / 9.6e-4 because of its e^10 Fourier frequencies). Ours computes the Fourier block in
    # float64: measured f32 rel_max 3.2e-6, rel_norm 1.2e-6, so this tighter limit (about 10x) holds
    # and implies the README's. Measured f64 rel_max 8.6e-16.
    "loftup": {F64: Tolerance(1e-9), F32: Tolerance(3e-5, 1e-5)},
    "naf": COMMON,  # measured f64 4.6e-15; f32 2.1e-6, 5.5e-7
    "uplift": COMMON,  # measured f64 9.8e-16; f32 7.6e-7, 2.4e-7
    # float64 only (README: the official float32 fit ends ~0.1 away). Measured: output rel_max 3.7e-15,
    # losses 4.4e-16 relative, parameters 5.6e-16 absolute.
    "featup_implicit": {F64: Tolerance(1e-9)},
    # float64: measured output rel_max 8.9e-14, losses 6.7e-16 relative, parameters 1.0e-12 absolute.
    # The README sets no float32 parity limit (the official float32 fit is at rel_max ~5e-5,
    # rel_norm ~1e-5); ours measured rel_max 2.0e-5, rel_norm 3.0e-6, losses 3.9e-7 relative: these
    # limits (5x) only catch a float32 fit that goes wrong.
    "upsample_anything": {F64: Tolerance(1e-9), F32: Tolerance(1e-4, 1.5e-5, scalar=2e-6)},
}


def tolerances_for(method: str) -> Dict[torch.dtype, Tolerance]:
    return TOLERANCES.get(method, COMMON)


# ---------------------------------------------------------------- comparisons


@dataclass
class Check:
    """One comparison with the fixture. ``kind``: ``rel_max`` (tensor, relative to max |ref|),
    ``scalar`` (relative error of each element), ``grad`` (max |difference| / ``scale``, the case's
    largest |gradient|), ``param`` (absolute), ``exact`` (bitwise equal)."""
    name: str
    ours: torch.Tensor
    ref: torch.Tensor
    kind: str = "rel_max"
    scale: float = 1.0


def error_of(check: Check) -> float:
    ours, ref = torch.as_tensor(check.ours).double(), torch.as_tensor(check.ref).double()
    assert ours.shape == ref.shape, (check.name, tuple(ours.shape), tuple(ref.shape))
    if check.kind == "exact":
        return 0.0 if torch.equal(ours, ref) else math.inf
    if check.kind == "rel_max":
        return relative_errors(ours, ref)[0]
    if check.kind == "scalar":
        return (ours / ref - 1).abs().max().item()
    if check.kind == "grad":
        return ((ours - ref).abs().max() / check.scale).item()
    if check.kind == "param":
        return (ours - ref).abs().max().item()
    raise ValueError(f"check kind must be one of exact, rel_max, scalar, grad, param; got {check.kind!r}")


def assert_checks(checks: Sequence[Check], tolerance: Tolerance) -> Dict[str, float]:
    """Every check within its kind's limit; returns name -> measured error."""
    assert checks, "nothing was compared"
    errors = {}
    for check in checks:
        errors[check.name] = error_of(check)
        limit = 0.0 if check.kind == "exact" else getattr(tolerance, check.kind)
        assert errors[check.name] <= limit, (check.name, check.kind, errors[check.name], limit)
    return errors


# ---------------------------------------------------------------- adapters


@dataclass(frozen=True)
class Variant:
    """Constructor options (a backend, a chunk size) under which the fixtures also run:
    ``dtypes``: the output checks to run; ``pieces``: the piece groups to run (None: all)."""
    options: Mapping = field(default_factory=dict)
    dtypes: Tuple[torch.dtype, ...] = (F64, F32)
    pieces: Optional[Tuple[str, ...]] = None


Fit = Callable[[dict, torch.dtype, Mapping], Tuple[torch.Tensor, List[Check]]]
Pieces = Callable[[dict, Mapping], Iterator[Check]]


def default_call(model: nn.Module, inputs: dict, case: dict) -> torch.Tensor:
    return model(inputs["features"], inputs["image"], case["config"].get("output_size"))


@dataclass(frozen=True)
class Adapter:
    """How the harness runs one method.

    * ``ctor_keys``: the ``config`` keys passed to the registered builder (None: all but
      ``output_size``); ``state_dict`` maps the fixture's official keys to ours;
    * ``call(model, inputs, case)``: the forward on the inputs (already in the compute dtype);
    * ``fit(case, dtype, options)``: replaces build + call for the per-image fitted methods; returns
      the output and the checks it recorded along the way (losses, gradients, parameters);
    * ``pieces``: group name -> ``fn(case, options)`` yielding float64 :class:`Check` s of the
      intermediates;
    * ``variants``: name -> :class:`Variant`; the name is part of the test id.
    """
    ctor_keys: Optional[Tuple[str, ...]] = None
    state_dict: Callable[[dict], dict] = dict
    call: Callable[[nn.Module, dict, dict], torch.Tensor] = default_call
    fit: Optional[Fit] = None
    pieces: Mapping[str, Pieces] = field(default_factory=dict)
    variants: Mapping[str, Variant] = field(default_factory=lambda: {"": Variant()})


def adapter_for(method: str) -> Adapter:
    """The method's adapter; a fixture whose method is not a registered upsampler is an error."""
    if method not in list_upsamplers():
        raise AssertionError(f"fixture method {method!r} has no registered upsampler "
                             f"(registered: {', '.join(list_upsamplers())})")
    return ADAPTERS.get(method, Adapter())


def build_model(case: dict, dtype: torch.dtype = F64, **options) -> nn.Module:
    """The fixture's model through the registered builder, weights loaded strictly, in eval mode."""
    adapter = adapter_for(case["method"])
    config = case["config"]
    keys = adapter.ctor_keys if adapter.ctor_keys is not None else [k for k in config if k != "output_size"]
    model = build_upsampler(case["method"], **{**{k: config[k] for k in keys}, **options})
    model.load_state_dict(adapter.state_dict(case["state_dict"]), strict=True)
    return model.to(dtype).eval()


def inputs_in(case: dict, dtype: torch.dtype) -> dict:
    """The floating-point inputs in ``dtype`` (exact for float32: the values are float32 numbers)."""
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in case["inputs"].items()}


def check_parity(case: dict, dtype: torch.dtype = F64, variant: str = "") -> Dict[str, float]:
    """Run the fixture's method in ``dtype`` (with ``variant`` 's options) and compare its output
    and recorded checks with the fixture; returns name -> measured error."""
    method = case["method"]
    adapter = adapter_for(method)
    tolerances = tolerances_for(method)
    if dtype not in tolerances:
        raise ValueError(f"dtype {dtype} has no parity limit for {method!r} (limits: {sorted(map(str, tolerances))})")
    options = adapter.variants[variant].options
    if adapter.fit is not None:
        out, checks = adapter.fit(case, dtype, options)
    else:
        model = build_model(case, dtype, **options)
        with torch.no_grad():
            out, checks = adapter.call(model, inputs_in(case, dtype), case), []
    assert out.dtype == dtype, out.dtype
    output = Check("output", out, case["output"])
    errors = assert_checks(checks + [output], tolerances[dtype])
    errors["output_rel_norm"] = relative_errors(out, case["output"])[1]
    assert errors["output_rel_norm"] <= tolerances[dtype].rel_norm, errors["output_rel_norm"]
    return errors


def check_pieces(case: dict, group: str, variant: str = "") -> Dict[str, float]:
    """The float64 intermediates of piece group ``group``, compared with the fixture."""
    adapter = adapter_for(case["method"])
    checks = list(adapter.pieces[group](case, adapter.variants[variant].options))
    return assert_checks(checks, tolerances_for(case["method"])[F64])


def kept(computed: Mapping[str, torch.Tensor], case: dict, required: Sequence[str] = ()) -> Iterator[Check]:
    """Checks of the computed intermediates the fixture kept (it keeps some per case); each name
    in ``required`` must be among them."""
    inter = case["intermediates"]
    missing = [name for name in required if name not in inter]
    assert not missing, (missing, sorted(inter))
    for name in computed:
        if name in inter:
            yield Check(name, computed[name], inter[name])


# ---------------------------------------------------------------- AnyUp


def anyup_intermediates(case: dict, options: Mapping) -> Iterator[Check]:
    model = build_model(case, **options)
    feats, image = case["inputs"]["features"], case["inputs"]["image"]
    out_size = case["config"]["output_size"] or tuple(image.shape[-2:])
    with torch.no_grad():
        code = model.encode_image(image)
        computed = {
            "image_encoding": model.image_encoder(image),
            "image_encoding_rope": code,
            "lfu": model.key_features_encoder[0](F.normalize(feats, dim=1)),
            "key_features": model.key_features_encoder(F.normalize(feats, dim=1)),
            "keys_image_pooled": F.adaptive_avg_pool2d(model.key_encoder(code), feats.shape[-2:]),
            "keys": model.encode_keys(code, feats),
            "queries_pooled": F.adaptive_avg_pool2d(model.query_encoder(code), out_size),
            "queries": model.encode_queries(code, out_size),
        }
        attn = model.cross_decode.cross_attn
        q = attn._project(computed["queries"], attn.norm_q, 0)
        k = attn._project(computed["keys"], attn.norm_k, 1)
        computed["attn"] = window_attention_reference(q, k, feats, attn.window_ratio, return_probs=True)[1]
    yield from kept(computed, case)
    if "attn_mask_blocked" in case["intermediates"]:
        inside = dense_window_mask(out_size, feats.shape[-2:], case["config"]["window_ratio"])
        yield Check("attn_mask_blocked", ~inside, case["intermediates"]["attn_mask_blocked"], "exact")


# ---------------------------------------------------------------- FeatUp JBU


def featup_jbu_call(model, inputs, case):
    """The official stack's native output (16x the grid) whatever the image size."""
    return model(inputs["features"], inputs["image"], output_size=tuple(case["output"].shape[-2:]))


def featup_jbu_levels(case: dict, options: Mapping) -> Iterator[Check]:
    model = build_model(case, **options)
    image, x = case["inputs"]["image"], case["inputs"]["features"]
    computed = {}
    with torch.no_grad():
        if model.channel_norm is not None:
            x = computed["normed_features"] = model.channel_norm(x)
        for index, level in enumerate(model.levels, start=1):
            guidance = F.adaptive_avg_pool2d(image, (2 * x.shape[-2], 2 * x.shape[-1]))
            computed[f"up{index}_kernel"] = level.kernels(guidance)
            x = computed[f"up{index}"] = level(x, guidance)
    unknown = set(case["intermediates"]) - set(computed)
    assert not unknown, sorted(unknown)
    yield from kept(computed, case)


# ---------------------------------------------------------------- FeatSharp


def featsharp_call(model, inputs, case):
    return model(inputs["features"], inputs["image"], output_size=model.hr_size, tile_features=inputs["tile_features"])


def featsharp_intermediates(case: dict, options: Mapping) -> Iterator[Check]:
    model, inputs = build_model(case, **options), case["inputs"]
    n, b = model.hr_size, inputs["image"].shape[0]
    with torch.no_grad():
        guidance = F.interpolate(inputs["image"], size=(n, n), mode="bilinear", align_corners=False)
        lr, tiles = model.standardize(inputs["features"]), model.standardize(inputs["tile_features"])
        jbu = model.jbu(lr, guidance)
        tile_bias = model.tile_pos.repeat_interleave(model.lr_size, 2).repeat_interleave(model.lr_size, 3)
        tokens = torch.cat([jbu, tiles + tile_bias], dim=1).permute(0, 2, 3, 1)
        block = model.block
        attn_residual = block.ls1(block.attn(block.norm1(tokens)))
        computed = {
            "lr_normalized": lr, "tiles_normalized": tiles, "jbu": jbu,
            "level_input": tokens.reshape(b, n * n, -1),
            "attn_residual": attn_residual.reshape(b, n * n, -1),
            "ffn_residual": block.ls2(block.mlp(block.norm2(tokens + attn_residual))).reshape(b, n * n, -1),
            "featurizer_input": torch.cat([low_res_views(inputs["image"], model.model_resolution),
                                           tile_crops(inputs["image"], model.model_resolution,
                                                      model.upsample_factor)]),
        }
        if "output_denormalized" in case["intermediates"]:
            denormalizing = build_model(case, **options, denormalize=True)
            computed["output_denormalized"] = featsharp_call(denormalizing, inputs, case)
    unknown = set(case["intermediates"]) - set(computed)
    assert not unknown, sorted(unknown)
    yield from kept(computed, case)


# ---------------------------------------------------------------- JAFAR


def jafar_intermediates(case: dict, options: Mapping) -> Iterator[Check]:
    model = build_model(case, **options)
    feats, image = case["inputs"]["features"], case["inputs"]["image"]
    out_size = tuple(case["config"]["output_size"])
    with torch.no_grad():
        code = model.encode_image(image)
        queries, keys = model.encode_queries(code, out_size), model.encode_keys(code, feats)
        computed = {
            "image_encoding": model.image_encoder(image),
            "image_encoding_rope": code,
            "queries_pooled": F.adaptive_avg_pool2d(model.query_encoder(code), out_size),
            "queries": queries,
            "key_features": model.key_features_encoder(F.normalize(feats, dim=1)),
            "keys_pooled": F.adaptive_avg_pool2d(model.key_encoder(code), feats.shape[-2:]),
            "keys": keys,
            "attn": model.cross_decode.cross_attn.attention_weights(queries, keys),
        }
    yield from kept(computed, case, required=("attn", "keys"))


# ---------------------------------------------------------------- LoftUp


def loftup_attention_probs(layer, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
    """Head-averaged softmax of one official cross-attention layer, written out in full."""
    e, heads = q.shape[-1], layer.heads
    w, b = layer.attention.in_proj_weight, layer.attention.in_proj_bias
    qh = F.linear(layer.norm_q(q), w[:e], b[:e]).unflatten(-1, (heads, e // heads)).transpose(1, 2)
    kh = F.linear(layer.norm_kv(kv), w[e:2 * e], b[e:2 * e]).unflatten(-1, (heads, e // heads)).transpose(1, 2)
    return ((qh / (e // heads) ** 0.5) @ kh.transpose(-1, -2)).softmax(-1).mean(1)


def loftup_intermediates(case: dict, options: Mapping) -> Iterator[Check]:
    model = build_model(case, **options)
    core = model.upsampler
    inter, feats = case["intermediates"], case["inputs"]["features"]
    guidance = inter.get("guidance", case["inputs"]["image"])
    b, _, height, width = guidance.shape
    with torch.no_grad():
        lr = model.channelnorm(feats)
        kv = core.kv_tokens(lr)
        scaled = core.fourier_feat[0](guidance)
        fourier = core.fourier_feat[1]((height, width), (0, height), b, scaled)
        first = core.first_conv(fourier)
        q = first.flatten(2).transpose(1, 2)
        computed = {"lr_normed": lr, "kv_tokens": kv, "minmax": scaled, "fourier": fourier, "first_conv": first}
        if core.lr_pe_type == "sine":
            computed["lr_pe"] = core.lr_pe((lr.shape[2], lr.shape[3]), (0, lr.shape[2]), b)
        for i, (attn, ffn) in enumerate(core.ca_transformer.layers):
            computed[f"attn_{i}"] = loftup_attention_probs(attn, q, kv)
            computed[f"ca_residual_{i}"] = attn(q, *attn.keys_values(kv))
            q = q + computed[f"ca_residual_{i}"]
            q = q + ffn(q)
        computed["ca_out"] = core.ca_transformer.norm(q)
        if core.lr_pe_type == "sine":
            pre_ln = computed["ca_out"].transpose(1, 2).reshape(b, -1, height, width)
            computed["final_pre_ln"] = core.final_conv[0](pre_ln)
    if "guidance" in inter:
        computed["guidance"] = F.interpolate(case["inputs"]["image"], size=(height, width), mode="bilinear",
                                             align_corners=False)
    unknown = set(inter) - set(computed)
    assert not unknown and len(inter) >= 5, (sorted(inter), sorted(unknown))
    yield from kept(computed, case)


# ---------------------------------------------------------------- NAF


def naf_window_probs(model, queries: torch.Tensor, keys: torch.Tensor, kernel: int) -> torch.Tensor:
    """Head-averaged softmax over each query's k x k window [B, Ho, Wo, k*k] (entry a*k + c for
    row offset a, column offset c), gathered with the cross-scale neighbour tables."""
    (ho, wo), (h, w) = queries.shape[-2:], keys.shape[-2:]
    rows = cross_scale_neighbors(h, ho, kernel, queries.dtype)  # [Ho, k] low-res rows
    cols = cross_scale_neighbors(w, wo, kernel, queries.dtype)  # [Wo, k]
    q, k = model._heads(queries), model._heads(keys)  # [B, n, Ho, Wo, d], [B, n, h, w, d]
    windows = k[:, :, rows[:, None, :, None], cols[None, :, None, :]]  # [B, n, Ho, Wo, k, k, d]
    logits = torch.einsum("bnyxd,bnyxijd->bnyxij", q, windows) * q.shape[-1] ** -0.5
    return logits.flatten(-2).softmax(-1).mean(1)


def naf_intermediates(case: dict, options: Mapping) -> Iterator[Check]:
    model = build_model(case, **options)
    cfg, image, feats = case["config"], case["inputs"]["image"], case["inputs"]["features"]
    out_size, (h, w) = tuple(cfg["output_size"]), feats.shape[-2:]
    with torch.no_grad():
        resized = F.interpolate(image, size=guidance_size(image.shape[-2:], out_size), mode="bilinear",
                                align_corners=False)
        encoding = model.image_encoder.encode(resized)
        queries = model.queries(image, out_size)
        keys = F.adaptive_avg_pool2d(queries, (h, w))
        computed = {"image_resized": resized, "encoding": encoding, "queries": queries, "keys": keys,
                    "encoding_pooled": F.adaptive_avg_pool2d(encoding, out_size),
                    "attn": naf_window_probs(model, queries, keys, cfg["kernel_size"])}
    yield from kept(computed, case)
    for axis, out_len, in_len in (("h", out_size[0], h), ("w", out_size[1], w)):
        nn_index = nearest_exact_index(in_len, out_len, F64)
        windows = natten_neighbors(out_len, cfg["kernel_size"], out_len // in_len)
        yield Check(f"nn_index_{axis}", nn_index, case["intermediates"][f"nn_index_{axis}"].long(), "exact")
        yield Check(f"window_{axis}", windows, case["intermediates"][f"window_{axis}"].long(), "exact")
        yield Check(f"cross_scale_neighbors_{axis}", cross_scale_neighbors(in_len, out_len, cfg["kernel_size"], F64),
                    nn_index[windows], "exact")


# ---------------------------------------------------------------- UPLiFT


def uplift_output_size(case: dict) -> Tuple[int, int]:
    """The official call's output size: ``outsize`` applied to the iterated map."""
    cfg, (h, w) = case["config"], case["inputs"]["features"].shape[-2:]
    return official_output_size(cfg["outsize"], (h << cfg["iters"], w << cfg["iters"]))


def uplift_call(model, inputs, case):
    return model(inputs["features"], inputs["image"], uplift_output_size(case))


def uplift_intermediates(case: dict, options: Mapping) -> Iterator[Check]:
    model = build_model(case, **options)
    features, image = case["inputs"]["features"], case["inputs"]["image"]
    (h, w), iters = features.shape[-2:], case["config"]["iters"]
    with torch.no_grad():
        prescaled = model.prescale(image)
        e3, e4 = model.encoder(prescaled)
        computed = {"image_prescaled": prescaled, "it0_enc_lo": nearest(e4, (h, w)),
                    "it0_enc_hi": nearest(e3, (2 * h, 2 * w))}
        computed["it0_block0"] = model.decoder.block_0(features, computed["it0_enc_lo"])
        computed["it0_up1"] = model.decoder.up_1(computed["it0_block0"])
        computed["it0_guide"] = model.decoder.block_1(computed["it0_up1"], computed["it0_enc_hi"])
        computed["it0_attn"] = model.attender.weights(computed["it0_guide"])
        computed.update({f"step{k}": step for k, step in enumerate(model.iterate(features, image, iters))})
    unknown = set(case["intermediates"]) - set(computed)
    assert not unknown, sorted(unknown)
    yield from kept(computed, case)


# ---------------------------------------------------------------- FeatUp implicit (a per-image fit)


class Replay:
    """The fixture's stored random draws, with the methods of ``featup_implicit.Draws``."""

    def __init__(self, inputs: dict):
        self.inputs = inputs

    def channel_keep(self, step, layer, channels):
        return self.inputs["drop_ups1" if layer == 3 else "drop_ups2"][step]

    def views(self, step, count, n_images):
        return self.inputs["idx"][step]

    def patch_keep(self, step, view, shape):
        return self.inputs["drop_attn"][step, view]

    def logit_keep(self, step, view, shape):
        return self.inputs["logit_keep"][step, view]


def implicit_model(case: dict) -> implicit_layers.FeatUpImplicitModel:
    """The fit's three modules at the stored starting parameters, float64."""
    c = case["config"]
    model = implicit_layers.FeatUpImplicitModel(c["proj_dim"], c["n_freqs"], c["color_feats"], c["kernel_size"],
                                                c["final_size"]).double()
    model.load_state_dict({k: v.double() for k, v in case["state_dict"].items()}, strict=True)
    return model


def implicit_jitter(inputs: dict) -> implicit_layers.Jitter:
    return implicit_layers.Jitter(inputs["jit_x"], inputs["jit_y"], inputs["jit_zoom"], inputs["jit_flip"])


def implicit_loss_weights(config: dict) -> Tuple[float, float, float]:
    return config["mag_weight"], config["mag_tv_weight"], config["blur_pin"]


def implicit_forward_at_start(case: dict, options: Mapping) -> Iterator[Check]:
    """Fourier features, the upsampler in eval mode and the unprojection at the stored parameters."""
    inputs, inter, model = case["inputs"], case["intermediates"], implicit_model(case)
    image = inputs["image"]
    low, scale = stats = implicit_layers.scaler_stats(image)
    with torch.no_grad():
        if "implicit_feats_init" in inter:  # stored for S <= 32
            fourier = model.upsampler[1]((image - low) / scale - 0.5, slice(None), image.shape[2])
            yield Check("implicit_feats_init", fourier, inter["implicit_feats_init"])
        hr = model.evaluate(image, stats, options["chunk_size"])
    yield Check("hr_feats_init_eval", hr, inter["hr_feats_init_eval"])
    out = implicit_layers.unproject(hr, inputs["unproj_components"], inputs["unproj_mean"])
    yield Check("output_init", out, inter["output_init"])


def implicit_step0_pieces(case: dict, options: Mapping) -> Iterator[Check]:
    """Train-mode upsampler, the jittered views (view 0 zoomed, view 1 flipped), the downsampler and
    the scale head at step 0."""
    inputs, step0, model = case["inputs"], case["intermediates"]["step0"], implicit_model(case)
    image, replay, jit = inputs["image"], Replay(inputs), implicit_jitter(inputs)
    views = inputs["idx"][0].tolist()
    assert views[:2] == [0, 1] and inputs["jit_zoom"][0] > 1 and inputs["jit_flip"][1]
    with torch.no_grad():
        keep = (replay.channel_keep(0, 3, None), replay.channel_keep(0, 6, None))
        hr = model.upsampler(image, implicit_layers.scaler_stats(image), keep=keep)
        both = torch.cat([implicit_layers.magnitude(hr), hr], dim=1)
        jittered = torch.cat([implicit_layers.apply_jitter(both, case["config"]["max_pad"], jit, v) for v in views])
        out = torch.cat([model.downsampler(implicit_layers.blur5(jittered[j:j + 1]), replay.patch_keep(0, j, None),
                                           replay.logit_keep(0, j, None)) for j in range(len(views))])
        scales = model.scales(inputs["jit_features"][inputs["idx"][0]])
    yield Check("step0.hr_feats", hr, step0["hr_feats"])
    yield Check("step0.hr_both_jittered", jittered, step0["hr_both_jittered"])
    yield Check("step0.output_both", out, step0["output_both"])
    yield Check("step0.scales", scales, step0["scales"])


def implicit_step0_loss_and_gradients(case: dict, options: Mapping) -> Iterator[Check]:
    """Each loss term and every parameter's gradient at step 0."""
    inputs, inter, model = case["inputs"], case["intermediates"], implicit_model(case)
    replay, image, views = Replay(inputs), inputs["image"], inputs["idx"][0]
    terms = implicit_layers.step_backward(
        model, image, implicit_layers.scaler_stats(image), inputs["jit_features"][views], implicit_jitter(inputs),
        views.tolist(), (replay.channel_keep(0, 3, None), replay.channel_keep(0, 6, None)),
        lambda j: (replay.patch_keep(0, j, None), replay.logit_keep(0, j, None)), case["config"]["max_pad"],
        implicit_loss_weights(case["config"]), options["chunk_size"])
    for ours, key in zip(terms, ("rec_loss", "mag_loss", "mag_tv", "blur_pin_loss", "loss")):
        yield Check(f"step0.{key}", ours.detach(), inter["step0"][key], "scalar")
    grads = dict(model.named_parameters())
    assert set(grads) == set(inter["grads_step0"])
    largest = max(g.abs().max() for g in inter["grads_step0"].values()).item()
    for key, ref in inter["grads_step0"].items():
        yield Check(f"grads_step0.{key}", grads[key].grad, ref, "grad", largest)


def implicit_fit(case: dict, dtype: torch.dtype, options: Mapping) -> Tuple[torch.Tensor, List[Check]]:
    """The whole fit: every NAdam step's loss, loss terms and parameters, then the final eval features."""
    inputs, inter, config, model = case["inputs"], case["intermediates"], case["config"], implicit_model(case)
    checks: List[Check] = []

    def record(step, terms, fitted):
        checks.append(Check(f"loss_per_step[{step}]", terms.loss.detach(), inter["loss_per_step"][step], "scalar"))
        checks.append(Check(f"loss_terms_per_step[{step}]", torch.stack(terms[:4]).detach(),
                            inter["loss_terms_per_step"][step], "scalar"))
        params = dict(fitted.named_parameters())
        for key, ref in inter["params_after_step"][step].items():
            checks.append(Check(f"params_after_step[{step}].{key}", params[key].detach().clone(), ref, "param"))

    losses = fit_model(model, inputs["image"], lambda idx: inputs["jit_features"][idx], implicit_jitter(inputs),
                       Replay(inputs), config["steps"], 2e-3, config["inner_batch"], config["max_pad"],
                       implicit_loss_weights(config), chunk_size=options["chunk_size"], callback=record)
    assert losses.shape == (config["steps"], 5) and len(checks) > 2 * config["steps"]
    image = inputs["image"]
    with torch.no_grad():
        hr = model.evaluate(image, implicit_layers.scaler_stats(image), options["chunk_size"])
    checks.append(Check("hr_feats_final_eval", hr, inter["hr_feats_final_eval"]))
    return implicit_layers.unproject(hr, inputs["unproj_components"], inputs["unproj_mean"]), checks


# ---------------------------------------------------------------- Upsample Anything (a per-image fit)


def upa_start(case: dict, dtype: torch.dtype = F64) -> dict:
    return {name: value.to(dtype) for name, value in case["state_dict"].items()}


def upa_forward_at_start(case: dict, options: Mapping) -> Iterator[Check]:
    inter, hr, feat = case["intermediates"], case["inputs"]["hr"], case["inputs"]["feat_lr"]
    maps = upa_start(case)
    lr_image = upa_kernel.downsample(hr, feat.shape[-2:])
    with torch.no_grad():
        pred = upa_kernel.render(maps, lr_image, hr, options["chunk_size"])
        feat_out = upa_kernel.render(maps, feat, hr, options["chunk_size"])
    yield Check("lr", lr_image, inter["lr"])
    yield Check("R_map_init", upa_kernel.radius_map(maps, hr.shape[-2:]), inter["R_map_init"], "exact")
    yield Check("pred_train_init", pred, inter["pred_train_init"])
    yield Check("feat_eval_init", feat_out, inter["feat_eval_init"])


def upa_step0_loss_and_gradients(case: dict, options: Mapping) -> Iterator[Check]:
    inter, hr = case["intermediates"], case["inputs"]["hr"]
    maps = {k: v.requires_grad_(True) for k, v in upa_start(case).items()}
    lr_image = upa_kernel.downsample(hr, case["inputs"]["feat_lr"].shape[-2:])
    loss = upa_kernel.loss_backward(maps, lr_image, hr, options["chunk_size"])
    yield Check("loss0", loss.detach(), inter["loss0"], "scalar")
    largest = max(g.abs().max() for g in inter["grads_step0"].values()).item()
    for key, ref in inter["grads_step0"].items():
        yield Check(f"grads_step0.{key}", maps[key].grad, ref, "grad", largest)


def upa_fit(case: dict, dtype: torch.dtype, options: Mapping) -> Tuple[torch.Tensor, List[Check]]:
    """The fit in ``dtype``: each step's loss; in float64 also its learning rate and parameters, and
    the final radius map."""
    inter, checks = case["intermediates"], []

    def record(step, loss, lr, maps):
        loss, lr = torch.tensor(float(loss), dtype=F64), torch.tensor(float(lr), dtype=F64)
        checks.append(Check(f"loss_per_step[{step}]", loss, inter["loss_per_step"][step], "scalar"))
        if dtype == F64:
            checks.append(Check(f"lr_per_step[{step}]", lr, inter["lr_per_step"][step], "scalar"))
            checks.extend(Check(f"params_after_step[{step}].{key}", maps[key].detach().clone(), ref, "param")
                          for key, ref in inter["params_after_step"][step].items())

    hr, feat = case["inputs"]["hr"].to(dtype), case["inputs"]["feat_lr"].to(dtype)
    final = upa_kernel.fit_maps(hr, feat.shape[-2:], steps=case["config"]["steps"], init=upa_start(case, dtype),
                                chunk_size=options["chunk_size"], callback=record)
    assert len(checks) >= case["config"]["steps"]
    if dtype == F64:
        checks.append(Check("R_map_final", upa_kernel.radius_map(final, hr.shape[-2:]), inter["R_map_final"], "exact"))
    with torch.no_grad():
        return upa_kernel.render(final, feat, hr, options["chunk_size"]), checks


# ---------------------------------------------------------------- the table


ADAPTERS: Dict[str, Adapter] = {
    "anyup": Adapter(
        ctor_keys=("qk_dim", "num_heads", "window_ratio", "kernel_size", "kernel_size_lfu", "lfu_dim", "input_dim"),
        pieces={"intermediates": anyup_intermediates},
        variants={"torch": Variant({"backend": "torch"}), "reference": Variant({"backend": "reference"}, pieces=())}),
    "featup_jbu": Adapter(ctor_keys=("dim", "use_norm"), state_dict=featup_jbu_official_keys, call=featup_jbu_call,
                          pieces={"levels": featup_jbu_levels}),
    "featsharp": Adapter(ctor_keys=("dim", "upsample_factor", "model_resolution", "patch_size", "no_ln"),
                         state_dict=featsharp_official_keys, call=featsharp_call,
                         pieces={"intermediates": featsharp_intermediates}),
    "jafar": Adapter(
        ctor_keys=("input_dim", "qk_dim", "v_dim", "feature_dim", "kernel_size", "num_heads"),
        pieces={"intermediates": jafar_intermediates},
        variants={"chunked": Variant(), "dense": Variant({"backend": "dense"}, pieces=()),
                  "chunks_of_7": Variant({"max_pixels_per_chunk": 7}, dtypes=(F64,), pieces=())}),
    "loftup": Adapter(
        ctor_keys=("dim", "color_feats", "n_freqs", "num_heads", "num_layers", "num_conv_layers", "lr_size",
                   "lr_pe_type"),
        pieces={"intermediates": loftup_intermediates}),
    "naf": Adapter(
        ctor_keys=("dim", "heads_attn", "heads_rope", "kernel_size", "use_encoder", "rope_base", "rope_rescale",
                   "img_layers"),
        pieces={"intermediates": naf_intermediates}),
    "uplift": Adapter(ctor_keys=("in_channels", "patch_size", "iters", "encoder_hc", "decoder_hc"), call=uplift_call,
                      pieces={"intermediates": uplift_intermediates}),
    "featup_implicit": Adapter(
        fit=implicit_fit,
        pieces={"forward_at_start": implicit_forward_at_start, "step0_pieces": implicit_step0_pieces,
                "step0_loss_and_gradients": implicit_step0_loss_and_gradients},
        # chunk 700 splits every fixture's MLP into several row chunks and its downsampler into row bands
        variants={"chunk_700": Variant({"chunk_size": 700}, dtypes=(),
                                       pieces=("forward_at_start", "step0_loss_and_gradients")),
                  "whole": Variant({"chunk_size": 1 << 23}, dtypes=(F64,))}),
    "upsample_anything": Adapter(
        fit=upa_fit,
        pieces={"forward_at_start": upa_forward_at_start, "step0_loss_and_gradients": upa_step0_loss_and_gradients},
        # chunk 60000 cuts every fixture into several chunks of whole LR rows (one also into row parts)
        variants={"chunk_60000": Variant({"chunk_size": 60000}, dtypes=()),
                  "whole": Variant({"chunk_size": upa_kernel.CHUNK_SIZE})}),
}


# ---------------------------------------------------------------- a new upsampler, added from outside


class GatedBilinear(Upsampler):
    """A stand-in for a newly contributed upsampler (tests/test_add_upsampler*.py): the bilinear map
    scaled per pixel by ``1 + tanh(gate(guidance))``, ``gate`` a 3x3 conv of the image resized to the
    output. Any channel count; state_dict ``gate.weight`` [1,3,3,3], ``gate.bias`` [1]."""

    def __init__(self):
        super().__init__()
        self.gate = nn.Conv2d(3, 1, 3, padding=1)

    def upsample(self, features: torch.Tensor, image: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        """features [B,C,h,w], image [B,3,H,W] -> [B,C,*size]."""
        guidance = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
        up = F.interpolate(features, size=size, mode="bilinear", align_corners=False)
        return up * (1 + torch.tanh(self.gate(guidance)))


# Its release table, named RELEASES in the builder's module as every upsampler's is (the tests point
# the URL at a local file).
RELEASES = releases(
    Release("gated_bilinear_v1", "https://example.invalid/gated_bilinear_v1.pth", licence="MIT",
            trained_on="feature-agnostic (a test stand-in)"))


def build_gated_bilinear(pretrained=None, progress: bool = True) -> GatedBilinear:
    """``GatedBilinear`` with weights from a release name, ``True`` (the first release), a URL or a
    path, loaded strictly through the shared loader; random with ``None``."""
    model = GatedBilinear()
    if pretrained not in (None, False):
        state_dict = load_weights(pretrained, RELEASES, progress=progress)
        load_state_dict_strict(model, state_dict, source=f"gated_bilinear checkpoint {pretrained!r}")
    return model


def gated_bilinear_fixture(seed: int = 0) -> dict:
    """A parity fixture of ``gated_bilinear`` in the common format. The reference output is an
    independent float64 formula (bilinear weights written out as matrices, the 3x3 conv as a sum of
    shifted products), not the module itself."""
    generator = torch.Generator().manual_seed(seed)
    weight = (0.5 * torch.randn(1, 3, 3, 3, generator=generator)).float()
    bias = torch.tensor([0.3])
    features = torch.randn(2, 5, 3, 4, generator=generator).double()  # float32 values (randn is float32)
    image = torch.randn(2, 3, 19, 26, generator=generator).double()
    size = (11, 17)

    def bilinear_matrix(n: int, m: int) -> torch.Tensor:
        """[m, n] weights of the align_corners=False bilinear resize n -> m."""
        x = ((torch.arange(m, dtype=F64) + 0.5) * n / m - 0.5).clamp(min=0)
        low = x.floor().long().clamp(max=n - 1)
        high, frac = (low + 1).clamp(max=n - 1), x - low
        rows = torch.zeros(m, n, dtype=F64)
        rows[torch.arange(m), low] += 1 - frac
        rows[torch.arange(m), high] += frac
        return rows

    def resize(x: torch.Tensor) -> torch.Tensor:
        return bilinear_matrix(x.shape[-2], size[0]) @ x @ bilinear_matrix(x.shape[-1], size[1]).T

    guidance = F.pad(resize(image), (1, 1, 1, 1))
    gate = bias.double() + sum(weight[0, c, i, j].double() * guidance[:, c, i:i + size[0], j:j + size[1]]
                               for c in range(3) for i in range(3) for j in range(3))
    output = resize(features) * (1 + torch.tanh(gate))[:, None]
    return {"method": "gated_bilinear", "config": {"output_size": list(size)},
            "state_dict": {"gate.weight": weight, "gate.bias": bias}, "inputs": {"features": features, "image": image},
            "output": output, "intermediates": {}, "notes": "gated_bilinear: a test upsampler; independent formula"}
