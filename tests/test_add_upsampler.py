"""Adding an upsampler: a new upsampler class runs through the parity harness, the mmseg neck and the
benchmark; tools/add_upsampler.py on stock mmseg configs of five families: the converted config
inherits the stock one, builds, trains two iterations on tiny ADE20K-layout data with the
backbone receiving gradients, and predicts. The stock backbones are shrunk through the
converter's cfg_options (applied before the channels are measured) to stay fast on a CPU."""
import argparse
import copy

import pytest
import torch
from mmengine import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import OptimWrapper
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmseg.registry import MODELS

import anyup_dense.integrations.mmseg  # noqa: F401
from anyup_dense.integrations.mmseg.convert import config_text, convert
from anyup_dense import UPSAMPLERS, build_upsampler
from anyup_dense.compare import zoo
from helpers import load_tool, relative_errors, serve_release
import parity_adapters
from parity_adapters import build_gated_bilinear, check_parity, gated_bilinear_fixture

CROP = 64
NO_WEIGHTS = {"model.pretrained": None, "model.backbone.init_cfg": None}
# stock config -> (shrinking cfg_options, expected changes: head key -> value, neck out_strides)
FAMILIES = {
    "vit-upernet": ("mmseg::vit/vit_vit-b16_mln_upernet_8xb2-160k_ade20k-512x512.py",
                    {"model.backbone.img_size": (CROP, CROP), "model.backbone.embed_dims": 32,
                     "model.backbone.num_layers": 4, "model.backbone.num_heads": 2,
                     "model.backbone.out_indices": (0, 1, 2, 3), "model.neck.in_channels": [32] * 4,
                     "model.neck.out_channels": 32},
                    {"decode_head.in_channels": [32] * 4, "auxiliary_head.in_channels": 32}, (4, 8, 16, 32)),
    "segformer": ("mmseg::segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py",
                  {"model.backbone.num_layers": [1, 1, 1, 1]},
                  {"decode_head.in_channels": [256] * 4}, (4, 8, 16, 32)),
    "deeplabv3plus": ("mmseg::deeplabv3plus/deeplabv3plus_r50-d8_4xb4-80k_ade20k-512x512.py",
                      {"model.backbone.depth": 18, "model.backbone.stem_channels": 8,
                       "model.backbone.base_channels": 8},
                      {"decode_head.in_channels": 64, "decode_head.c1_in_channels": 64,
                       "auxiliary_head.in_channels": 64}, (4, 8, 8, 8)),
    "pspnet": ("mmseg::pspnet/pspnet_r50-d8_4xb4-80k_ade20k-512x512.py",
               {"model.backbone.depth": 18, "model.backbone.stem_channels": 8, "model.backbone.base_channels": 8},
               {"decode_head.in_channels": 64, "auxiliary_head.in_channels": 64}, (4, 8, 8, 8)),
    "swin-upernet": ("mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py",
                     {"model.backbone.embed_dims": 8, "model.backbone.depths": (1, 1, 1, 1),
                      "model.backbone.num_heads": (1, 1, 1, 1)},
                     {"decode_head.in_channels": [64] * 4, "auxiliary_head.in_channels": 64}, (4, 8, 16, 32)),
}
# head sizes shrunk after conversion (not input channels)
SMALL_HEADS = {"model.decode_head.channels": 8, "model.auxiliary_head.channels": 8}


def tiny_training_cfg(cfg: Config, data_root) -> Config:
    """Stock ADE20K pipeline at a 64 px crop on the synthetic data, 2 images a batch."""
    cfg.merge_from_dict({k: v for k, v in SMALL_HEADS.items() if cfg.model.get(k.split(".")[1])})
    if cfg.model.decode_head.get("c1_channels"):
        cfg.model.decode_head.c1_channels = 8
    cfg.model.data_preprocessor.size = (CROP, CROP)
    for split in ("train_dataloader", "val_dataloader"):
        loader = cfg[split]
        loader.update(num_workers=0, persistent_workers=False, batch_size=2)
        loader.dataset.data_root = str(data_root / "ade" / "ADEChallengeData2016")
        for transform in loader.dataset.pipeline:
            if transform["type"] in ("RandomResize", "Resize"):
                transform["scale"] = (2 * CROP, CROP)
            if transform["type"] == "RandomCrop":
                transform["crop_size"] = (CROP, CROP)
    return cfg


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_converted_stock_config_builds_trains_and_predicts(family, synthetic_root, tmp_path):
    source, shrink, expected, strides = FAMILIES[family]
    keys, summary = convert(source, "anyup", pretrained=None, upsampler_kwargs=dict(qk_dim=8),
                            cfg_options={**NO_WEIGHTS, **shrink})
    # what was changed, and nothing else under model besides the shrinking options
    assert keys["_base_"] == [source]
    model = keys["model"]
    assert model["type"] == "GuidedEncoderDecoder" and model["neck"]["out_strides"] == strides
    assert model["neck"].get("_delete_", False) == ("model.neck.in_channels" in shrink)
    for key, value in expected.items():
        head, name = key.split(".")
        assert model[head][name] == value, (key, summary)
    path = tmp_path / "converted.py"
    path.write_text(config_text(keys))
    cfg = tiny_training_cfg(Config.fromfile(str(path)), synthetic_root)

    init_default_scope("mmseg")
    segmentor = revert_sync_batchnorm(MODELS.build(cfg.model))
    assert type(segmentor.neck).__name__ == "UpsamplerNeck"
    before = copy.deepcopy(segmentor.backbone.state_dict())
    optim = OptimWrapper(torch.optim.SGD(segmentor.parameters(), lr=0.01))
    loader = Runner.build_dataloader(cfg.train_dataloader)
    segmentor.train()
    for _, data in zip(range(2), loader):
        losses = segmentor.train_step(data, optim)
        assert all(torch.isfinite(v) for k, v in losses.items() if k.startswith("loss") or k == "loss")
    changed = [k for k, v in segmentor.backbone.state_dict().items()
               if v.is_floating_point() and not torch.equal(v, before[k])]
    assert changed, "no backbone weight moved: no gradient reached the backbone"
    segmentor.eval()
    data = next(iter(Runner.build_dataloader(cfg.val_dataloader)))
    with torch.no_grad():
        out = segmentor.val_step(data)
    assert out[0].pred_sem_seg.data.shape[-2:] == out[0].gt_sem_seg.data.shape[-2:]


@pytest.mark.slow
def test_cli_writes_an_inheriting_config_and_prints_each_change(tmp_path, capsys):
    out = tmp_path / "psp_bilinear.py"
    load_tool("add_upsampler").main(["mmseg::pspnet/pspnet_r50-d8_4xb4-80k_ade20k-512x512.py", "--upsampler",
                                     "bilinear", "-o", str(out), "--cfg-options", "model.backbone.depth=18"])
    printed = capsys.readouterr().out
    for line in ("model.type: EncoderDecoder -> GuidedEncoderDecoder", "model.decode_head.in_channels: 2048 -> 512",
                 "model.auxiliary_head.in_channels: 1024 -> 512", "bgr_to_rgb=True"):
        assert line in printed
    cfg = Config.fromfile(str(out))
    assert cfg.model.decode_head.type == "PSPHead" and cfg.model.neck.upsampler == "bilinear"
    assert "pretrained" not in cfg.model.neck  # training-free: no weights
    assert "anyup_dense.integrations.mmseg" in cfg.custom_imports.imports


def test_unsupported_segmentor_is_refused():
    with pytest.raises(ValueError, match="model.type 'CascadeEncoderDecoder' is not supported"):
        convert("mmseg::ocrnet/ocrnet_hr18s_4xb4-80k_ade20k-512x512.py", "anyup")


# ---------------------------------------------------------------- adding a new upsampler


@pytest.fixture
def gated_bilinear(monkeypatch):
    """``gated_bilinear`` registered for one test: a model class and its builder, nothing else."""
    monkeypatch.setattr(UPSAMPLERS, "_builders", UPSAMPLERS.builders())  # restored after the test
    UPSAMPLERS.register("gated_bilinear")(build_gated_bilinear)
    return "gated_bilinear"


def test_new_upsampler_runs_through_parity_harness_neck_and_benchmark(gated_bilinear, tmp_path, monkeypatch):
    """A new upsampler with only a model class, its release table, its registration and a fixture in
    the common format (written here, reloaded with weights_only=True) passes the parity harness through
    the default adapter, loads its release through the shared loader (found by the comparison zoo),
    runs in the mmseg neck, and is timed by the benchmark's measure()."""
    path = tmp_path / "gated_bilinear_b2.pt"
    torch.save(gated_bilinear_fixture(), path)
    case = torch.load(path, weights_only=True)
    assert check_parity(case, torch.float64)["output"] <= 1e-9  # measured 5.6e-15
    assert check_parity(case, torch.float32)["output"] <= 1e-4  # measured 6.1e-7 (rel_norm 4.2e-7)
    broken = dict(case, state_dict={**case["state_dict"], "gate.bias": case["state_dict"]["gate.bias"] + 1e-3})
    with pytest.raises(AssertionError, match="output"):
        check_parity(broken, torch.float64)

    # its release table: served from a local file, found by the comparison zoo, loaded strictly
    serve_release(monkeypatch, tmp_path, parity_adapters.RELEASES, "gated_bilinear_v1", case["state_dict"])
    assert zoo.release_for(gated_bilinear, "vit_small_patch14_dinov2.lvd142m") == "gated_bilinear_v1"
    assert not zoo.cached(gated_bilinear, "gated_bilinear_v1")
    released = build_upsampler(gated_bilinear, pretrained=True, progress=False)
    assert zoo.cached(gated_bilinear, "gated_bilinear_v1")
    assert all(torch.equal(v, case["state_dict"][k]) for k, v in released.state_dict().items())

    init_default_scope("mmseg")
    neck = MODELS.build(dict(type="UpsamplerNeck", upsampler=gated_bilinear, out_strides=(1, 2)))
    neck.upsampler.load_state_dict(case["state_dict"])
    features, image = case["inputs"]["features"].float(), case["inputs"]["image"].float()
    fine, coarse = neck((features,), image, None)  # mmseg's ImageNet preprocessing = the upsampler's norm
    expected = neck.upsampler(features, image, tuple(image.shape[-2:]))
    assert relative_errors(fine, expected)[0] <= 1e-6 and coarse.shape[-2:] == (9, 13)

    benchmark = load_tool("benchmark")
    run = benchmark.Case(gated_bilinear, "", 56, 8)
    assert benchmark.available(run, torch.device("cpu")) is None
    results = benchmark.measure(run, torch.device("cpu"), argparse.Namespace(warmup=0, repeats=1, max_memory_gb=1.0))
    assert results["fwd"] == results["fwdbwd"] == "ok" and results["fwd_ms"] > 0, results
