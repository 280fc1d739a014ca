"""FeatUp's implicit upsampler (per-image fit): interface, cost bounds (float64 parity with the
official fit, every random draw replayed: tests/test_parity.py)."""
import pytest
import torch
import torch.nn.functional as F

import anyup_dense.upsamplers.featup_implicit  # noqa: F401  (registers the builder)
from anyup_dense.registry import UPSAMPLERS
from anyup_dense.upsamplers import featup_implicit_layers as layers
from anyup_dense.upsamplers.featup_implicit import Draws, FeatUpImplicit, ViewBank
from helpers import LargestTensor, relative_errors


def test_jitter_against_pad_interpolate_crop():
    """The gather-based jitter equals the official pad -> F.interpolate(scale_factor) -> crop -> flip on
    a non-square map, for zoomed and unzoomed views at the far edges of the crop range (float64, 1e-14)."""
    x = torch.randn(1, 4, 9, 13, dtype=torch.float64)
    pad = 3
    zooms = torch.tensor([1.0, 1.7000000476837158, 1.25, 1.0])
    for v, (zoom, flip) in enumerate(zip(zooms.tolist(), [False, True, False, True])):
        padded = F.pad(x, [pad] * 4, mode="reflect")
        zoomed = F.interpolate(padded, scale_factor=zoom, mode="bilinear") if zoom > 1 else padded
        for ox, oy in ((0, 0), (zoomed.shape[2] - 9, zoomed.shape[3] - 13)):
            ref = zoomed[:, :, ox:ox + 9, oy:oy + 13]
            ref = ref.flip(-1) if flip else ref
            jit = layers.Jitter(torch.tensor([ox]), torch.tensor([oy]), zooms[v:v + 1], torch.tensor([flip]))
            assert relative_errors(layers.apply_jitter(x, pad, jit, 0), ref)[0] <= 1e-14


def test_pca_projection():
    """Exact PCA: orthonormal components of the centred pixels; with all components the projection
    round-trips; P = D is the identity (official: no projection)."""
    feats = torch.randn(3, 6, 4, 4, dtype=torch.float64) * torch.arange(1, 7, dtype=torch.float64).view(1, 6, 1, 1)
    components, mean = layers.fit_pca(feats, 3)
    assert torch.allclose(components @ components.T, torch.eye(3, dtype=torch.float64), atol=1e-12)
    pixels = feats.movedim(1, -1).reshape(-1, 6)
    assert torch.allclose(mean, pixels.mean(0), atol=1e-14)
    eigvals, eigvecs = torch.linalg.eigh(torch.cov(pixels.T, correction=0))
    top = eigvecs[:, -3:]
    assert torch.allclose((components @ top).abs().sum(0), torch.ones(3, dtype=torch.float64), atol=1e-9)
    full = layers.fit_pca(feats, 5)
    assert relative_errors(layers.unproject(layers.project(feats, *full), *full), feats)[0] > 1e-3
    identity = layers.fit_pca(feats, 6)
    assert torch.equal(layers.project(feats, *identity), feats)


# --- the interface: a tiny fit with a stand-in featurizer ------------------------------------------------


def featurizer(grid: int = 4, channels: int = 6):
    """Patch-pooled pixels through a fixed random 1x1 projection, then tanh: [N,3,R,R] -> [N,C,grid,grid]."""
    weight = torch.randn(channels, 3, 1, 1, generator=torch.Generator().manual_seed(3))

    def featurize(images):
        pooled = F.adaptive_avg_pool2d(images, grid)
        return torch.tanh(F.conv2d(pooled, weight.to(images)))

    return featurize


def tiny(**kwargs) -> FeatUpImplicit:
    options = dict(model_resolution=24, steps=2, inner_batch=2, n_images=6, pca_batch=2, proj_dim=3, n_freqs=2,
                   kernel_size=9, max_pad=3)
    return FeatUpImplicit(**{**options, **kwargs})


def test_seeded_fit_is_bitwise_deterministic_and_seed_matters():
    image = torch.randn(1, 3, 24, 24)
    feat = featurizer()(image)
    first = tiny()(feat, image, featurizer=featurizer())
    assert first.shape == (1, 6, 24, 24) and first.dtype == torch.float32
    assert torch.equal(first, tiny()(feat, image, featurizer=featurizer()))
    assert not torch.equal(first, tiny(seed=1)(feat, image, featurizer=featurizer()))


def test_fit_state_losses_and_lazy_views():
    """``fit`` returns the fitted model, PCA and per-step losses; it featurises only the views it needs."""
    image, calls = torch.randn(1, 3, 24, 24, dtype=torch.float64), []
    base = featurizer()

    def counting(views):
        calls.append(views.shape[0])
        return base(views)

    up = tiny(steps=3, n_images=50, use_norm=False)
    (fit,) = up.fit(image, counting)
    assert fit.losses.shape == (3, 5) and fit.losses.dtype == torch.float64
    total = fit.losses[:, 0] + 0.001 * fit.losses[:, 1] + 0.05 * fit.losses[:, 2] + 0.1 * fit.losses[:, 3]
    assert torch.allclose(total, fit.losses[:, 4], rtol=1e-14, atol=0)
    assert fit.components.shape == (3, 6) and fit.mean.shape == (6,)
    assert calls[0] == 2 and sum(calls) <= 2 + 3 * 2  # the PCA views, then at most the drawn ones
    start = up.new_model(3, 4, torch.float64, "cpu")
    assert not torch.equal(start.upsampler[4].weight, fit.model.upsampler[4].weight)
    out = up.apply_fits([fit], image, (13, 17))
    native = up.apply_fits([fit], image)
    assert torch.equal(out, F.interpolate(native, size=(13, 17), mode="bilinear", align_corners=False))
    hr = fit.model.evaluate(image, fit.stats, 1 << 20)
    assert relative_errors(native, layers.unproject(hr, fit.components, fit.mean))[0] <= 1e-15


def test_view_bank_targets():
    """A bank's targets are the PCA projection of the (LayerNormed) featurizer output on the jittered view."""
    image = torch.randn(1, 3, 24, 24, dtype=torch.float64)
    jit = Draws(0).jitter(5, 24, 3, 1.8, True)
    feat = featurizer()
    bank = ViewBank(image, jit, 3, lambda v: feat(v).double(), 3, 2, 2)
    view4 = layers.apply_jitter(image, 3, jit, 4)
    expected = layers.project(feat(view4), bank.components, bank.mean)
    assert torch.allclose(bank(torch.tensor([4, 0]))[0], expected[0], rtol=0, atol=1e-14)
    assert sorted(bank.cache) == [0, 1, 4]


def test_draws_are_official_distributions():
    d = Draws(0)
    jit = d.jitter(4000, 24, 3, 1.8, True)
    zoomed = jit.zoom > 1
    assert 0.45 < zoomed.double().mean() < 0.55 and 0.45 < jit.flip.double().mean() < 0.55
    assert jit.zoom.max() < 1.8 and torch.equal(jit.zoom.float().double(), jit.zoom)
    assert (jit.x >= 0).all() and (jit.x <= ((30 * jit.zoom).floor() - 24)).all()
    assert not d.jitter(100, 24, 3, 1.8, False).flip.any()
    keep = d.patch_keep(0, 0, (50, 50, 4))
    assert keep.dtype == torch.bool and 0.78 < keep.double().mean() < 0.82


def test_batch_is_fitted_per_image():
    image = torch.randn(2, 3, 24, 24)
    feat = featurizer()(image)
    both = tiny()(feat, image, featurizer=featurizer())
    for b in range(2):
        alone = tiny()(feat[b:b + 1], image[b:b + 1], featurizer=featurizer())
        assert torch.equal(both[b:b + 1], alone)


def test_fit_under_no_grad_and_resized_view():
    """The fit enables gradients itself; a 30x20 image is fitted on its 24x24 view and the output
    resized back; float16 in, float16 out."""
    image = torch.randn(1, 3, 30, 20)
    view = F.interpolate(image, size=(24, 24), mode="bilinear", align_corners=False)
    feat = featurizer()(view)
    reference = tiny()(feat, image, featurizer=featurizer())
    assert reference.shape == (1, 6, 30, 20)
    with torch.inference_mode():
        assert torch.equal(tiny()(feat, image, featurizer=featurizer()), reference)
    half = tiny()(feat.half(), image.half(), featurizer=featurizer())
    assert half.dtype == torch.float16 and half.shape == (1, 6, 30, 20)


def test_progress_bar(capsys):
    image = torch.randn(1, 3, 24, 24)
    feat = featurizer()(image)
    quiet = tiny()(feat, image, featurizer=featurizer())
    assert capsys.readouterr().err == ""
    loud = tiny(progress=True)(feat, image, featurizer=featurizer())
    assert "featup_implicit fit" in capsys.readouterr().err
    assert torch.equal(quiet, loud)


def test_registered_builder():
    up = UPSAMPLERS.build("featup_implicit", steps=3, lr=0.01)
    assert isinstance(up, FeatUpImplicit) and (up.steps, up.lr) == (3, 0.01) and up.requires_featurizer
    assert (up.model_resolution, up.inner_batch, up.n_images, up.proj_dim, up.n_freqs, up.kernel_size,
            up.max_pad, up.max_zoom, up.loss_weights) == (224, 10, 3000, 128, 30, 29, 30, 1.8, (0.001, 0.05, 0.1))
    with pytest.raises(ValueError, match="pretrained"):
        UPSAMPLERS.build("featup_implicit", pretrained="x")


@pytest.mark.parametrize("kwargs, match", [
    (dict(steps=-1), "steps must be a non-negative int"),
    (dict(steps=2.0), "steps must be a non-negative int"),
    (dict(lr=0), "lr must be a positive finite number"),
    (dict(lr=float("nan")), "lr must be a positive finite number"),
    (dict(inner_batch=0), "inner_batch must be a positive int"),
    (dict(n_images=True), "n_images must be a positive int"),
    (dict(proj_dim=0), "proj_dim must be a positive int"),
    (dict(color_feats=1), "color_feats must be True or False"),
    (dict(max_zoom=0.5), "max_zoom must be >= 1"),
    (dict(max_pad=24), r"max_pad \(24\) must be smaller than model_resolution"),
    (dict(kernel_size=25), r"kernel_size \(25\) must be at most model_resolution"),
    (dict(mag_weight=-1), "mag_weight must be a non-negative finite number"),
    (dict(seed=-1), "seed must be a non-negative int"),
    (dict(chunk_size=0), "chunk_size must be a positive int"),
    (dict(progress="yes"), "progress must be True or False"),
])
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny(**kwargs)


def test_bad_call_arguments():
    image = torch.randn(1, 3, 24, 24)
    feat = featurizer()(image)
    with pytest.raises(ValueError, match="pass featurizer="):
        tiny()(feat, image)
    with pytest.raises(ValueError, match=r"featurizer returned \(2, 6, 3, 3\) .* expected \[2, 6, 4, 4\]"):
        tiny()(feat, image, featurizer=featurizer(grid=3))
    with pytest.raises(ValueError, match=r"featurizer returned \(2, 5, 4, 4\) .* expected \[2, 6, 4, 4\]"):
        tiny()(feat, image, featurizer=featurizer(channels=5))
    with pytest.raises(ValueError, match="featurizer returned list"):
        tiny()(feat, image, featurizer=lambda views: [views])
    with pytest.raises(ValueError, match="kernel_size 9 gives 6 windows .* kernel sizes that fit: 1-8, 10-12, 15-16, 20"):
        tiny()(featurizer(grid=5)(image), image, featurizer=featurizer(grid=5))
    with pytest.raises(ValueError, match=r"proj_dim \(3\) must be at most the feature channels \(2\)"):
        tiny()(featurizer(channels=2)(image), image, featurizer=featurizer(channels=2))
    with pytest.raises(ValueError, match="features must be the square grid"):
        tiny()(torch.randn(1, 6, 4, 5), image, featurizer=featurizer())
    with pytest.raises(ValueError, match="features must be a 4-D tensor"):
        tiny()(feat[0], image, featurizer=featurizer())


def test_chunked_mask_draws_equal_one_draw(monkeypatch):
    """Large keep masks are drawn DRAW_CHUNK uniforms at a time (a multiple of 16) with the same numbers
    as one whole draw, also when the mask size is not a multiple of 16 (bitwise)."""
    fi = anyup_dense.upsamplers.featup_implicit
    monkeypatch.setattr(fi, "DRAW_CHUNK", 32)
    shape = (3, 5, 7, 3)  # 315 elements: 9 full chunks and a remainder of 27
    draws = fi.Draws(5)
    patch, logit = draws.patch_keep(0, 0, shape), draws.logit_keep(0, 0, shape)
    g = torch.Generator().manual_seed(5)
    assert torch.equal(patch, torch.rand(shape, generator=g) >= fi.DROPOUT_P)
    assert torch.equal(logit, torch.rand(shape, generator=g) > fi.DROPOUT_P)


@pytest.mark.slow
def test_fit_step_has_no_tensor_larger_than_one_full_map():
    """Memory bound of a fit step: with a small chunk_size no tensor exceeds one [1,P+1,R,R] map (before
    the per-band jitter / blur, the reflect-padded blurred view held (P+1)*(R+4)*R elements and the
    whole-map cat another copy); the bands themselves stay far below it."""
    r, p, f, k = 32, 8, 4, 8  # the patch mask f*f*k*k*(P+1) is exactly one map
    proj = torch.randn(16, 3, 1, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def featurizer(x):
        return F.conv2d(F.adaptive_avg_pool2d(x, f), proj)

    up = FeatUpImplicit(model_resolution=r, kernel_size=k, steps=1, n_images=4, pca_batch=2, proj_dim=p, n_freqs=2,
                        max_pad=4, chunk_size=2000, featurize_batch=2)
    image = torch.randn(1, 3, r, r, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    up.fit(image, featurizer)  # warm-up outside the mode (lazy imports)
    with LargestTensor() as mode:
        up.fit(image, featurizer)
    assert mode.largest <= (p + 1) * r * r
