#!/usr/bin/env bash
# The main job: a demonstration case on the GPU when there is one, else the CPU backend on a small
# case: what it computed, how fast, and its check against an fp64 reference. Builds only what it
# runs: with a GPU the full build (scripts/build.sh); without one the command line tool alone,
# without CUDA, in build-demo/ (scripts/test.sh still compiles every CUDA source).
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  bash scripts/build.sh
  exec ./build/src/cli/ccattn demo
fi
bash scripts/setup.sh --cpu
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
[ -e build-demo/CMakeCache.txt ] || cmake -S . -B build-demo "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCCATTN_ENABLE_CUDA=OFF -DCCATTN_BUILD_TESTS=OFF
cmake --build build-demo -j "$(nproc)" --target ccattn_cli
exec ./build-demo/src/cli/ccattn demo
