"""tools/compare.py on synthetic data: two upsamplers under one protocol -> Markdown/CSV table with
the published numbers, bar chart; a second invocation reuses the finished runs."""
import csv

import pytest
from mmengine import Config

from helpers import load_tool
from mmseg_helpers import CONFIGS, CROP, tiny_config


def tiny_compare_config(synthetic_root, tmp_path, name: str) -> str:
    cfg = tiny_config(CONFIGS / "compare" / name, synthetic_root, tmp_path / "unused", "bilinear", epochs=1)
    cfg.crop_size = CROP
    path = tmp_path / "tiny.py"
    cfg.dump(str(path))
    return str(path)


def read_csv(path) -> list:
    with open(path) as file:
        return list(csv.DictReader(file))


@pytest.mark.slow
def test_compare_writes_table_csv_chart_and_reuses_runs(synthetic_root, tmp_path):
    compare = load_tool("compare")
    argv = ["--protocol", "anyup", "--dataset", "ade20k-151", "--upsamplers", "bilinear,anyup", "--random-weights",
            "--config", tiny_compare_config(synthetic_root, tmp_path, "anyup_ade20k-151.py"),
            "--work-dir", str(tmp_path / "runs")]
    rows = compare.main(argv)
    out = tmp_path / "runs" / "anyup_ade20k-151"
    assert [r["upsampler"] for r in rows] == ["bilinear", "anyup"] and {r["run"] for r in rows} == {"new"}
    assert [r["mIoU (published)"] for r in rows] == [40.54, 42.43]  # AnyUp Tab. 2
    assert all(0 <= r["mIoU"] <= 100 and 0 <= r["aAcc"] <= 100 for r in rows)
    table = (out / "comparison.md").read_text()
    assert "AnyUp Tab. 2" in table and "| anyup | random (--random-weights) |" in table
    written = read_csv(out / "comparison.csv")
    assert [(r["upsampler"], float(r["mIoU"]), r["aAcc (published)"]) for r in written] == \
        [(r["upsampler"], pytest.approx(r["mIoU"]), str(r["aAcc (published)"])) for r in rows]
    assert (out / "comparison.png").stat().st_size > 1000
    neck = Config.fromfile(str(out / "anyup" / "config.py")).model.neck
    assert neck == dict(type="UpsamplerNeck", upsampler="anyup")  # exactly the neck named, nothing merged in
    checkpoint = out / "anyup" / "epoch_1.pth"
    stamp = checkpoint.stat().st_mtime_ns
    again = compare.main(argv)
    assert {r["run"] for r in again} == {"reused"} and checkpoint.stat().st_mtime_ns == stamp
    assert [r["mIoU"] for r in again] == [r["mIoU"] for r in rows]


@pytest.mark.slow
def test_feature_space_preservation_trains_one_probe_and_evaluates_each_upsampler(synthetic_root, tmp_path):
    compare = load_tool("compare")
    config = tiny_compare_config(synthetic_root, tmp_path, "anyup_fsp_ade20k-151.py")
    rows = compare.main(["--protocol", "anyup_fsp", "--dataset", "ade20k-151", "--upsamplers", "bilinear,anyup",
                         "--random-weights", "--config", config, "--work-dir", str(tmp_path / "runs")])
    out = tmp_path / "runs" / "anyup_fsp_ade20k-151"
    assert sorted(p.name for p in (out / "_probe").glob("*.pth")) == ["epoch_1.pth"]  # trained once
    assert not list((out / "anyup").glob("*.pth"))  # evaluated only
    evaluated = Config.fromfile(str(out / "anyup" / "config.py")).model.neck
    assert evaluated == dict(type="UpsamplerNeck", upsampler="anyup")  # full resolution (stride 1)
    assert [r["mIoU (published)"] for r in rows] == [39.73, 40.83]  # AnyUp Tab. 5
    assert all(0 <= r["mIoU"] <= 100 for r in rows)


def test_compare_refuses_unknown_protocol_and_upsampler():
    compare = load_tool("compare")
    with pytest.raises(SystemExit):
        compare.parse_args(["--protocol", "nope", "--dataset", "ade20k-151"])
    with pytest.raises(SystemExit):
        compare.parse_args(["--protocol", "anyup", "--dataset", "ade20k-151", "--upsamplers", "bilinear,nope"])
