"""tools/add_upsampler.py on stock mmseg configs of five families: the converted config
inherits the stock one, builds, trains two iterations on tiny ADE20K-layout data with the
backbone receiving gradients, and predicts. The stock backbones are shrunk through the
converter's cfg_options (applied before the channels are measured) to stay fast on a CPU."""
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
from conftest import load_tool

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
