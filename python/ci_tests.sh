#!/usr/bin/env bash
# The Python tests on a machine without a GPU (CI): a virtualenv with a CPU-only PyTorch, the package
# built without CUDA, then pytest on CPU tensors. Skips (exit 0, with the reason) when PyTorch cannot
# be installed within CCATTN_TORCH_INSTALL_TIMEOUT seconds (default 600). CCATTN_PYTHON_VENV reuses
# an existing virtualenv that has torch (default: build/python-ci, created on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${CCATTN_PYTHON_VENV:-build/python-ci}"
skip() { echo "python tests skipped: $*"; exit 0; }

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >/dev/null 2>&1 || skip "python3 -m venv is unavailable"
fi
py="$venv/bin/python"
if ! "$py" -c "import torch" >/dev/null 2>&1; then
  # PyPI's wheel runs on CPU-only machines too (its CUDA libraries load lazily).
  timeout "${CCATTN_TORCH_INSTALL_TIMEOUT:-600}" "$py" -m pip install -q --disable-pip-version-check torch \
    || skip "PyTorch could not be installed in time"
fi
"$py" -m pip install -q --disable-pip-version-check scikit-build-core pytest || skip "no scikit-build-core / pytest"
CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" "$py" -m pip install -q --disable-pip-version-check \
  --no-build-isolation --no-deps -Ccmake.define.CCATTN_ENABLE_CUDA=OFF .
"$py" -m pytest -q python/tests
