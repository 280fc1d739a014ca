"""Release tables and the one checkpoint loader.

* Every release URL and torch.hub cache file name is pinned byte for byte (the values the
  per-model dicts had before the tables), and so is which release the comparison zoo picks.
* Every layout and implied size of every registered upsampler's releases round-trips: the test
  writes a tiny model's weights in the release's official layout, serves it at a ``file://`` URL
  under the release name, and the builder loads it strictly into a model of the size the release
  implies, through the release's own cache file.
* A released file that does not fit the model is refused, naming the keys.
"""
import pytest
import torch
from safetensors.torch import save_file

from anyup_dense.checkpoints import (CheckpointMismatchError, Release, hf_url, load_weights, releases,
                                     with_release_kwargs)
from anyup_dense.compare.zoo import cached, release_for, release_table
from anyup_dense.upsamplers import build_upsampler, list_upsamplers
from helpers import load_fixture, serve_release
from upsampler_helpers import TINY_UPSAMPLER_KWARGS

JAFAR = "https://github.com/PaulCouairon/JAFAR/releases/download/Weights/"
FEATUP = "https://marhamilresearch4.blob.core.windows.net/feature-upsampling-public/pretrained/"
# upsampler -> [(release, URL, torch.hub cache file name)], the default release first
OFFICIAL = {
    "anyup": [
        ("anyup_paper", "https://github.com/wimmerth/anyup/releases/download/checkpoint/anyup_paper.pth",
         "anyup_paper.pth"),
        ("anyup_multi_backbone",
         "https://github.com/wimmerth/anyup/releases/download/checkpoint_v2/anyup_multi_backbone.pth",
         "anyup_multi_backbone.pth")],
    "naf": [("naf_release", "https://github.com/valeoai/NAF/releases/download/model/naf_release.pth",
             "naf_release.pth")],
    "jafar": [(name, f"{JAFAR}{name}.pth", f"{name}.pth") for name in (
        "vit_small_patch14_dinov2.lvd142m", "vit_base_patch14_dinov2.lvd142m", "vit_small_patch14_reg4_dinov2",
        "vit_base_patch16_224.dino", "vit_base_patch16_224", "vit_base_patch16_clip_384",
        "vit_base_patch16_siglip_512.v2_webli", "vit_small_patch16_dinov3.lvd1689m",
        "vit_small_plus_patch16_dinov3.lvd1689m", "vit_base_patch16_dinov3.lvd1689m",
        "vit_large_patch16_dinov3.lvd1689m", "radio_v2.5-b", "radio_v2.5-l", "radio_v2.5-h")],
    "loftup": [(f"loftup_{tag}", f"https://huggingface.co/haiwen/loftup-{tag}/resolve/main/pytorch_model.bin",
                f"loftup-{tag}_pytorch_model.bin")
               for tag in ("dinov2s", "dinov2s_reg", "dinov2b", "dinov2b_reg", "clip", "siglip", "siglip2")],
    "uplift": [(variant, f"https://huggingface.co/UPLiFT-upsampler/uplift_{variant}/resolve/main/"
                         f"uplift_{variant}.safetensors", f"uplift_{variant}.safetensors")
               for variant in ("dinov2-s14", "dinov3-splus16")],
    "featup_jbu": [(name, f"{FEATUP}{'no_norm/' if name.endswith('_no_norm') else ''}"
                          f"{name.removesuffix('_no_norm')}_jbu_stack_cocostuff.ckpt",
                    f"featup_{name}_jbu_stack_cocostuff.ckpt")
                   for name in ("vit", "vit_no_norm", "dino16", "dino16_no_norm", "dinov2", "dinov2_no_norm", "clip",
                                "clip_no_norm", "maskclip_no_norm", "resnet50", "resnet50_no_norm")],
}
WITH_RELEASES = [name for name in list_upsamplers() if release_table(name)]
# One release per upsampler, layout and implied size (the others differ only in URL and cache
# file name, pinned above): LoftUp's widths 384, 768 and 512, FeatUp's backbones and use_norm, ...
LOADED = [(name, release) for name in WITH_RELEASES
          for release in {(r.layout, repr(sorted(r.build_kwargs.items()))): r.name
                          for r in reversed(release_table(name).values())}.values()]
# what pretrained=True needs besides the tiny kwargs (FeatUp picks its release by backbone)
TRUE_KWARGS = {"featup_jbu": {"backbone": "vit"}}


def test_urls_and_cache_files_are_the_official_ones():
    assert sorted(WITH_RELEASES) == sorted(OFFICIAL)
    for name, expected in OFFICIAL.items():
        table = release_table(name)
        assert [(r.name, r.url, r.file_name) for r in table.values()] == expected, name
        assert list(table) == [r.name for r in table.values()], name  # keyed by their own names


def test_zoo_picks_the_release_trained_on_the_backbone():
    """Today's choices, plus the DINOv2-S-reg4 JAFAR file under timm's tagged name and the
    UPLiFT DINOv3-S+/16 file; feature-agnostic releases serve any backbone."""
    expected = {
        ("anyup", "any_backbone"): "anyup_paper", ("naf", "any_backbone"): "naf_release",
        ("jafar", "vit_base_patch16_224.dino"): "vit_base_patch16_224.dino",
        ("jafar", "radio_v2.5-h"): "radio_v2.5-h",
        ("jafar", "vit_small_patch14_reg4_dinov2"): "vit_small_patch14_reg4_dinov2",
        ("jafar", "vit_small_patch14_reg4_dinov2.lvd142m"): "vit_small_patch14_reg4_dinov2",
        ("loftup", "vit_small_patch14_dinov2.lvd142m"): "loftup_dinov2s",
        ("loftup", "vit_small_patch14_reg4_dinov2.lvd142m"): "loftup_dinov2s_reg",
        ("loftup", "vit_base_patch14_dinov2.lvd142m"): "loftup_dinov2b",
        ("loftup", "vit_base_patch14_reg4_dinov2.lvd142m"): "loftup_dinov2b_reg",
        ("featup_jbu", "vit_small_patch14_dinov2.lvd142m"): "dinov2",
        ("uplift", "vit_small_patch14_dinov2.lvd142m"): "dinov2-s14",
        ("uplift", "vit_small_plus_patch16_dinov3.lvd1689m"): "dinov3-splus16",
        ("loftup", "vit_large_patch14_dinov2.lvd142m"): None, ("jafar", "resnet50"): None,
        ("featsharp", "vit_small_patch14_dinov2.lvd142m"): None, ("bilinear", "any_backbone"): None,
    }
    assert {key: release_for(*key) for key in expected} == expected


def _official_keys(name: str, state: dict) -> dict:
    """Our keys -> the official file's: only FeatUp JBU renames (see its convert_official_state_dict)."""
    if name != "featup_jbu":
        return state
    renames = (("levels.", "upsampler.up"), ("residual_conv.", "upsampler.fixup_proj.1."),
               ("channel_norm.", "model.1.norm."))
    official = {}
    for key, value in state.items():
        ours, theirs = next((o, t) for o, t in renames if key.startswith(o))
        rest = key[len(ours):]
        if ours == "levels.":
            level, rest = rest.split(".", 1)
            rest = f"{int(level) + 1}.{rest}"
        official[theirs + rest] = value
    return official


def official_payload(name: str, release: Release, state: dict) -> dict:
    """``state`` as the official file of ``release`` holds it (a safetensors release: the flat
    state_dict that :func:`helpers.serve_release` writes with safetensors)."""
    state = {k: v.clone() for k, v in _official_keys(name, state).items()}
    if release.layout == "lightning":
        return {"epoch": 0, "global_step": 1, "pytorch-lightning_version": "1.9.0", "state_dict": state}
    if release.layout == "training_dict":
        return {release.weights_key: state, "optimizer_jafar": {}, "epoch": 3}
    return state


def _serve(name, release, tmp_path, monkeypatch):
    """A tiny model of the release's size, written in its layout and served under its name.
    Returns (the model, the kwargs to build it besides the release's own)."""
    kwargs = {k: v for k, v in TINY_UPSAMPLER_KWARGS.get(name, {}).items() if k not in release.build_kwargs}
    torch.manual_seed(0)
    reference = build_upsampler(name, **kwargs, **release.build_kwargs)
    serve_release(monkeypatch, tmp_path, release_table(name), release.name,
                  official_payload(name, release, reference.state_dict()))
    return reference, kwargs


@pytest.mark.parametrize("name, release_name", LOADED, ids=[f"{n}:{r}" for n, r in LOADED])
def test_every_release_loads_strictly_from_its_official_layout(name, release_name, tmp_path, monkeypatch):
    release = release_table(name)[release_name]
    reference, kwargs = _serve(name, release, tmp_path, monkeypatch)
    assert not cached(name, release_name)
    torch.manual_seed(1)  # a different initialisation: equal tensors below come from the file
    model = build_upsampler(name, pretrained=release_name, progress=False, **kwargs)
    assert cached(name, release_name)  # under the release's own cache file name
    assert not model.training
    assert model.state_dict().keys() == reference.state_dict().keys()
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


@pytest.mark.parametrize("name", WITH_RELEASES)
def test_pretrained_true_is_the_first_release(name, tmp_path, monkeypatch):
    first = next(iter(release_table(name).values()))
    reference, kwargs = _serve(name, first, tmp_path, monkeypatch)
    model = build_upsampler(name, pretrained=True, progress=False, **kwargs, **TRUE_KWARGS.get(name, {}))
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


# upsampler -> (its release fixture, a key to drop, a key to add, a key to reshape, the wrong shape,
# the model's shape): the flat state_dict releases, each in its own key names
MISFITS = {
    "anyup": ("anyup_released_c100_down.pt", "rope.freqs", "extra.weight", "cross_decode.conv2d.weight",
              (128, 128, 1, 1), (128, 128, 3, 3)),
    "naf": ("naf_released_c12_nonint.pt", "image_encoder.rope.periods", "image_encoder.encoder.1.shortcut.weight",
            "image_encoder.sem_encoder.0.weight", (128, 3, 1, 1), (128, 3, 3, 3)),
    "uplift": ("uplift_released_dinov2s14_c384_i2.pt", "attender.conv1.bias", "attender.conv2.weight",
               "decoder.block_0.blocks.0.conv.0.weight", (64, 500, 3, 3), (64, 512, 3, 3)),
}


@pytest.mark.parametrize("name", MISFITS)
def test_a_file_that_does_not_fit_names_its_keys(name, tmp_path):
    """A released file with one key missing, one extra and one reshaped is refused, naming all three."""
    fixture, missing, extra, reshaped, wrong_shape, model_shape = MISFITS[name]
    state = dict(load_fixture(fixture)["state_dict"])
    del state[missing]
    state[extra] = torch.zeros(1)
    state[reshaped] = torch.zeros(wrong_shape)
    torch.save(state, tmp_path / "misfit.pth")
    with pytest.raises(CheckpointMismatchError) as info:
        build_upsampler(name, pretrained=str(tmp_path / "misfit.pth"))
    message = str(info.value)
    assert f"missing keys (1): {missing}" in message
    assert f"unexpected keys (1): {extra}" in message
    assert f"{reshaped}: checkpoint {wrong_shape} vs model {model_shape}" in message


# ---- the loader on its own ----------------------------------------------------------------

STATE = {"w": torch.arange(6.0).view(2, 3), "b": torch.tensor([1.5, -2.0])}


def _table(tmp_path, layout="state_dict", weights_key=None):
    return releases(Release("r", (tmp_path / "r.bin").as_uri(), layout=layout, weights_key=weights_key,
                            file_name="r_cached.bin"))


def _same(state: dict) -> bool:
    return state.keys() == STATE.keys() and all(torch.equal(state[k], STATE[k]) for k in STATE)


def test_paths_are_read_by_their_bytes_and_unwrapped_by_the_tables_weights_keys(tmp_path):
    """A safetensors file named .pth is still read as safetensors; a training dict given as a
    path is unwrapped when its key is one the table's releases use, else returned whole."""
    save_file(STATE, str(tmp_path / "weights.pth"))
    assert _same(load_weights(str(tmp_path / "weights.pth"), {}))
    torch.save({"jafar": STATE, "epoch": 3}, tmp_path / "train.pth")
    assert _same(load_weights(tmp_path / "train.pth", _table(tmp_path, "training_dict", "jafar")))
    assert set(load_weights(tmp_path / "train.pth", _table(tmp_path))) == {"jafar", "epoch"}


def test_a_release_file_without_its_layouts_key_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    torch.save(STATE, tmp_path / "r.bin")
    with pytest.raises(CheckpointMismatchError, match=r"is not laid out as release 'r' \(lightning: the weights "
                                                      r"under 'state_dict'\); its keys: b, w"):
        load_weights("r", _table(tmp_path, "lightning"))
    assert (tmp_path / "torch_home" / "hub" / "checkpoints" / "r_cached.bin").is_file()
    assert _same(load_weights("r", _table(tmp_path)))  # the same cached file, read as a plain state_dict


def test_release_records_are_checked():
    with pytest.raises(ValueError, match="layout='zip'; expected one of state_dict, lightning, training_dict"):
        Release("x", "https://h/x.pth", layout="zip")
    with pytest.raises(ValueError, match="layout='training_dict' needs weights_key="):
        Release("x", "https://h/x.pth", layout="training_dict")
    with pytest.raises(ValueError, match="weights_key='model' contradicts layout='lightning'"):
        Release("x", "https://h/x.pth", layout="lightning", weights_key="model")
    with pytest.raises(ValueError, match="backbones must be a tuple"):
        Release("x", "https://h/x.pth", backbones="vit_small_patch14_dinov2")
    with pytest.raises(ValueError, match="release name 'x' appears twice"):
        releases(Release("x", "https://h/a.pth"), Release("x", "https://h/b.pth"))
    record = Release("x", hf_url("org/repo", "model.safetensors"), layout="lightning")
    assert (record.url, record.file_name, record.weights_key) == (
        "https://huggingface.co/org/repo/resolve/main/model.safetensors", "model.safetensors", "state_dict")


def test_release_build_kwargs_fill_in_and_refuse_contradictions():
    table = releases(Release("r", "https://h/r.pth", build_kwargs=dict(dim=384, lr_size=16)))
    assert with_release_kwargs("r", table, dict(dim=None, heads=2)) == dict(dim=384, lr_size=16, heads=2)
    assert with_release_kwargs(True, table, dict(dim=384)) == dict(dim=384, lr_size=16)
    assert with_release_kwargs("/some/path.pth", table, dict(dim=7)) == dict(dim=7)
    with pytest.raises(ValueError, match=r"dim=768 does not match release 'r' \(dim=384\)"):
        with_release_kwargs("r", table, dict(dim=768))
