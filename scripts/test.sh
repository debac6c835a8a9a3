#!/usr/bin/env bash
# The whole test suite: builds (CUDA sources compile wherever nvcc is), runs every C++ test (GPU tests,
# label gpu, skip themselves without a GPU), then the Python package's tests on CPU tensors (skipped
# when PyTorch cannot be installed). Extra arguments go to cmake's configure step.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh "$@"
ctest --test-dir build --output-on-failure -j "$(nproc)"
bash python/ci_tests.sh
