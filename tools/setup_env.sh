#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv with the pinned framework
# stack (torch, timm, MMSegmentation on mmcv-lite, Detectron2 from its sdist), then install
# anyup_dense itself in editable mode. Registry-only: nothing else is downloaded.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3.11}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
STAMP=.venv/.anyup_dense_requirements
if ! cmp -s requirements-frameworks.txt "$STAMP"; then
  .venv/bin/python -m pip install -q -r requirements-frameworks.txt
  cp requirements-frameworks.txt "$STAMP"
fi
bash tools/install_detectron2.sh .venv/bin/python
.venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
