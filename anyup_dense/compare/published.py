"""Published numbers, per protocol and dataset, that tools/compare.py puts beside each result.

Values as reported (percent for mIoU/aAcc; metres for depth RMSE; degrees for normal RMSE),
keyed by this package's upsampler names and the metric names our mmseg evaluators report
(``mIoU``/``aAcc`` of IoUMetric, ``rmse``/``d1``(``_aligned``) of AlignedDepthMetric,
``normal/rmse``/``normal/a11.25`` of NormalMetric). Sources and caveats: ``SOURCES`` and
docs/compare.md.
"""
from typing import Dict, Optional

# protocol -> where its numbers come from
SOURCES: Dict[str, str] = {
    "anyup": "AnyUp Tab. 2 (arXiv 2510.12764 v2), official weights for every method",
    "jafar": "JAFAR Tab. 1 (arXiv 2506.11136 v3); its FeatUp was re-trained by the JAFAR authors",
    "loftup": "LoftUp Tab. 3 (arXiv 2504.14032 v1), SA-1B-trained upsamplers",
    "probe3d_depth": "AnyUp Tab. 3 (NYUv2, Probe3D protocol at 224)",
    "probe3d_normals": "AnyUp Tab. 3 (NYUv2, Probe3D protocol at 224)",
    "anyup_fsp": "AnyUp Tab. 5 (probes trained on low-res DINOv2 features, 448)",
}


def _seg(**rows) -> Dict[str, Dict[str, float]]:
    """name=(mIoU, aAcc) or name=mIoU -> {name: {"mIoU": ..., "aAcc": ...}}."""
    out = {}
    for name, values in rows.items():
        values = values if isinstance(values, tuple) else (values, )
        out[name] = dict(zip(("mIoU", "aAcc"), values))
    return out


# (protocol, dataset) -> upsampler -> metric -> value
PUBLISHED: Dict[tuple, Dict[str, Dict[str, float]]] = {
    ("anyup", "coco-stuff-27"): _seg(bilinear=(59.48, 79.32), featup_jbu=(61.95, 81.14), loftup=(62.15, 81.32),
                                     jafar=(61.82, 81.07), anyup=(62.16, 81.37)),
    ("anyup", "voc-21"): _seg(bilinear=(81.43, 95.38), featup_jbu=(83.37, 96.04), loftup=(83.69, 96.11),
                              jafar=(84.36, 96.22), anyup=(84.00, 96.19)),
    ("anyup", "ade20k-151"): _seg(bilinear=(40.54, 74.12), featup_jbu=(42.19, 75.57), loftup=(42.02, 75.72),
                                  jafar=(42.06, 75.48), anyup=(42.43, 75.85)),
    ("jafar", "coco-stuff-27"): _seg(bilinear=(59.03, 79.07), featup_jbu=(60.10, 79.95), jafar=(60.78, 80.47)),
    ("jafar", "voc-21"): _seg(bilinear=(80.70, 95.17), featup_jbu=(81.08, 95.32), jafar=(84.44, 96.28)),
    ("jafar", "ade20k-151"): _seg(bilinear=(39.23, 73.69), featup_jbu=(38.82, 73.74), jafar=(40.49, 74.92)),
    ("jafar", "cityscapes-19"): _seg(bilinear=(59.37, 92.47), featup_jbu=(56.06, 91.86), jafar=(61.47, 93.42)),
    ("loftup", "coco-stuff-27"): _seg(bilinear=56.15, featup_jbu=56.30, loftup=61.11),
    ("loftup", "cityscapes-19"): _seg(bilinear=44.79, featup_jbu=44.19, loftup=53.10),
    ("anyup_fsp", "ade20k-151"): _seg(bilinear=(39.73, 73.32), featup_jbu=(40.19, 74.05), loftup=(4.27, 46.58),
                                      jafar=(39.06, 73.75), anyup=(40.83, 74.94)),
    ("probe3d_depth", "nyu"): {
        name: dict(rmse=r, d1=d, rmse_aligned=ra, d1_aligned=da) for name, (r, d, ra, da) in {
            "bilinear": (0.4925, 0.8081, 0.3582, 0.9112), "featup_jbu": (0.4816, 0.8156, 0.3413, 0.9193),
            "loftup": (0.4847, 0.8127, 0.3478, 0.9166), "jafar": (0.4906, 0.8052, 0.3481, 0.9180),
            "anyup": (0.4755, 0.8216, 0.3378, 0.9233)}.items()},
    ("probe3d_normals", "nyu"): {
        name: {"normal/rmse": r, "normal/a11.25": a} for name, (r, a) in {
            "bilinear": (32.70, 0.26), "featup_jbu": (32.69, 0.25), "loftup": (33.94, 0.26),
            "jafar": (31.54, 0.28), "anyup": (31.17, 0.29)}.items()},
}

# dataset -> the metrics a comparison table shows (first = the chart's)
METRICS: Dict[str, tuple] = {"nyu": ("rmse", "d1", "rmse_aligned", "d1_aligned")}
NORMAL_METRICS = ("normal/rmse", "normal/a11.25")
SEGMENTATION_METRICS = ("mIoU", "aAcc")


def table_metrics(protocol: str, dataset: str) -> tuple:
    """The metrics a (protocol, dataset) comparison reports."""
    if protocol == "probe3d_normals":
        return NORMAL_METRICS
    return METRICS.get(dataset, SEGMENTATION_METRICS)


def published(protocol: str, dataset: str, upsampler: str, metric: str) -> Optional[float]:
    """The published value, or ``None`` when the source reports none."""
    return PUBLISHED.get((protocol, dataset), {}).get(upsampler, {}).get(metric)
