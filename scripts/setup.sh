#!/usr/bin/env bash
# One-time set-up of a fresh machine: build tools, GoogleTest, and the CUTLASS/CuTe headers from
# PyPI (nvidia-cutlass==4.2.0.0) into the ignored folder .deps/. Safe to run again.
# --cpu: for a build without CUDA (no CUTLASS headers).
set -euo pipefail
cd "$(dirname "$0")/.."
cpu_only=0
[ "${1:-}" = --cpu ] && cpu_only=1

need_apt=()
command -v cmake >/dev/null || need_apt+=(cmake)
command -v ninja >/dev/null || need_apt+=(ninja-build)
command -v g++ >/dev/null || need_apt+=(g++)
if [ ! -e /usr/lib/x86_64-linux-gnu/cmake/GTest ] && [ ! -e /usr/lib/cmake/GTest ] && [ ! -e .deps/googletest/CMakeLists.txt ]; then
  if [ -e /usr/src/googletest/CMakeLists.txt ]; then
    mkdir -p .deps && cp -r /usr/src/googletest .deps/googletest
  else
    need_apt+=(libgtest-dev)
  fi
fi
if [ ${#need_apt[@]} -gt 0 ] && command -v apt-get >/dev/null; then
  echo "setup: installing ${need_apt[*]}"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}") >/dev/null
fi

# CuTe headers are needed only where nvcc builds the CUDA backends.
if [ $cpu_only = 0 ] && command -v nvcc >/dev/null && [ ! -e .deps/cutlass/cutlass_library/source/include/cute/tensor.hpp ]; then
  echo "setup: installing CUTLASS/CuTe 4.2 headers into .deps/cutlass"
  python3 -m pip install -q --disable-pip-version-check --no-deps --target .deps/cutlass nvidia-cutlass==4.2.0.0
fi
