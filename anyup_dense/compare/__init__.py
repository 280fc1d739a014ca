"""Comparing upsamplers on one harness: build each for a backbone, measure time, memory and
feature-space preservation, and write tables and charts (tools/quickstart.py, tools/compare.py)."""
from anyup_dense.compare.profiling import PeakTensorMemory, measure
from anyup_dense.compare.quality import feature_preservation
from anyup_dense.compare.zoo import Entry, architecture_kwargs, build_for_backbone, release_for

__all__ = ["PeakTensorMemory", "measure", "feature_preservation", "Entry", "architecture_kwargs", "build_for_backbone",
           "release_for"]
