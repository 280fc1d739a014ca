#!/usr/bin/env bash
# Install Detectron2 0.6 from its PyPI sdist into the Python given as $1 (default: python).
#
# The sdist (pb1-detectron2==0.6, upstream tag v0.6) ships no C++ sources and keeps the
# model-zoo configs under the package, so a plain `pip install` cannot work. We
#   1. download the sdist, 2. move configs/ to where setup.py packages them from,
#   3. add an empty `_C` extension (third_party/d2_stub_vision.cpp),
#   4. build without isolation (setup.py imports torch) and without its stale runtime pins.
# Runtime dependencies are pinned in requirements-frameworks.txt instead.
set -euo pipefail
PY=${1:-python}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Up to date when detectron2 imports and its _C is the current stub (or a real build).
if "$PY" -c "from detectron2 import _C; _C.get_compiler_version()" 2>/dev/null; then
  echo "detectron2 already installed"; exit 0
fi
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
"$PY" -m pip download -q --no-deps --no-binary :all: --no-build-isolation -d "$W" pb1-detectron2==0.6
tar xzf "$W"/pb1-detectron2-0.6.tar.gz -C "$W"
S="$W/pb1-detectron2-0.6"
mv "$S/detectron2/model_zoo/configs" "$S/configs"
mkdir -p "$S/detectron2/layers/csrc"
cp "$HERE/third_party/d2_stub_vision.cpp" "$S/detectron2/layers/csrc/vision.cpp"
"$PY" -m pip install -q --no-build-isolation --no-deps "$S"
echo "detectron2 installed"
