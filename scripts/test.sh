#!/usr/bin/env bash
# The whole test suite: builds (CUDA sources compile wherever nvcc is), then runs every test.
# GPU tests (label gpu) skip themselves on machines without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh "$@"
ctest --test-dir build --output-on-failure -j "$(nproc)"
