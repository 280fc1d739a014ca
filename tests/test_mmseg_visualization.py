"""``tools/test.py --show-dir`` and ``--out`` on each probe kind (segmentation, depth, normals).

The probe pipelines centre-crop, so the stock hook (drawing on the full image file) failed
on segmentation, and normals had nothing to draw; ``--out`` failed for normals and wrote
depth in whole metres. Here a tiny model is evaluated with both options, then:

* each drawing has the layout of its kind, and its image panel is the crop the model saw;
* the files written by ``--out``, read back in the dataset's encoding, give the metrics the
  evaluator reported (so they hold the predictions, in the dataset's units).
"""
import glob

import mmcv
import numpy as np
import pytest
import torch
from mmengine.registry import init_default_scope
from mmseg.registry import DATASETS, MODELS

from anyup_dense.integrations.mmseg.metrics import angular_errors
from anyup_dense.integrations.mmseg.transforms import decode_normals
from anyup_dense.integrations.mmseg.visualization import input_image
from helpers import load_tool
from mmseg_helpers import CONFIGS, CROP, tiny_config

pytestmark = pytest.mark.slow

KINDS = {
    "segmentation": CONFIGS / "linear_probe" / "bilinear_vit-s14-dinov2_linear-probe_ade20k-151_448x448.py",
    "depth": CONFIGS / "depth_probe" / "bilinear_vit-s14-dinov2_depth-probe_nyu_224x224.py",
    "normals": CONFIGS / "normal_probe" / "bilinear_vit-s14-dinov2_normal-probe_nyu_224x224.py",
}
# drawing size (H, W): segmentation gt | pred side by side; depth and normals: image over map, gt | pred
LAYOUT = {"segmentation": (CROP, 2 * CROP), "depth": (2 * CROP, 2 * CROP), "normals": (2 * CROP, 2 * CROP)}


@pytest.fixture(scope="module", params=sorted(KINDS))
def evaluated(request, synthetic_root, tmp_path_factory):
    """(kind, metrics, --out dir, --show-dir dir, test samples by image name) of one tools/test.py
    run of a tiny random model with both options."""
    kind = request.param
    root = tmp_path_factory.mktemp(kind)
    cfg = tiny_config(KINDS[kind], synthetic_root, root / "work", "bilinear", epochs=1)
    cfg.dump(str(root / "config.py"))
    init_default_scope("mmseg")
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    torch.save({"meta": {}, "state_dict": model.state_dict()}, root / "model.pth")
    metrics = load_tool("test").main([str(root / "config.py"), str(root / "model.pth"), "--work-dir",
                                      str(root / "test"), "--out", str(root / "out"), "--show-dir", str(root / "show")])
    samples = {}
    for item in DATASETS.build(cfg.test_dataloader.dataset):
        name = item["data_samples"].img_path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        samples[name] = item
    return kind, metrics, root / "out", root / "show", samples


def test_show_dir_draws_every_sample_on_the_crop(evaluated):
    kind, _, _, show, samples = evaluated
    drawings = sorted(glob.glob(str(show / "vis_data" / "vis_image" / "*.png")))
    assert len(drawings) == len(samples) > 0
    for path in drawings:
        drawn = mmcv.imread(path, channel_order="rgb")
        assert drawn.shape == (*LAYOUT[kind], 3)
        if kind != "segmentation":  # (segmentation blends the labels into the image)
            name = path.rsplit("/", 1)[-1].removeprefix("test_").rsplit("_", 1)[0].rsplit(".", 1)[0]
            assert np.array_equal(drawn[:CROP, :CROP], input_image(samples[name]["inputs"]))


def read_outputs(kind, out, samples):
    """``{name: (prediction as the dataset stores it, decoded; ground truth)}``."""
    pairs = {}
    for name, item in samples.items():
        gt = item["data_samples"]
        if kind == "segmentation":
            pairs[name] = (mmcv.imread(str(out / f"{name}.png"), flag="unchanged"), gt.gt_sem_seg.data[0].numpy())
        elif kind == "depth":
            millimetres = mmcv.imread(str(out / f"{name}.png"), flag="unchanged")
            assert millimetres.dtype == np.uint16
            pairs[name] = (millimetres / 1000.0, gt.gt_depth_map.data[0].numpy())
        else:
            rgb = mmcv.imread(str(out / f"{name}.png"), channel_order="rgb")
            pairs[name] = (decode_normals(rgb).transpose(2, 0, 1), gt.gt_normal_map.data.numpy())
    return pairs


def test_out_files_give_the_reported_metrics(evaluated):
    kind, metrics, out, _, samples = evaluated
    pairs = read_outputs(kind, out, samples)
    assert all(pred.shape[-2:] == (CROP, CROP) for pred, _ in pairs.values())
    if kind == "segmentation":
        valid = [(pred == gt)[gt != 255] for pred, gt in pairs.values()]
        accuracy = 100 * np.concatenate(valid).mean()
        assert accuracy == pytest.approx(metrics["aAcc"], abs=0.005)  # mmseg rounds to 2 decimals
    elif kind == "depth":
        # per image over 1e-3 < gt < 10 m (the config's eval range); the PNG truncates to whole
        # millimetres, so each pixel is < 1 mm low and the rmse moves by less than 1e-3 m
        rmse = [np.sqrt(np.mean((pred - gt)[(gt > 1e-3) & (gt < 10)] ** 2)) for pred, gt in pairs.values()]
        assert np.mean(rmse) == pytest.approx(metrics["rmse"], abs=1e-3)
        assert any(not np.allclose(pred, np.round(pred)) for pred, _ in pairs.values())  # not whole metres
    else:
        # 8-bit encoding: each component within 1/255, about 0.5 degree at most
        means = [angular_errors(torch.from_numpy(pred), torch.from_numpy(gt)).mean() for pred, gt in pairs.values()]
        assert float(np.mean(means)) == pytest.approx(metrics["normal/mean"], abs=0.5)
