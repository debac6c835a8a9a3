#!/usr/bin/env bash
# One call on a GPU machine: build, the GPU test suite with compute-sanitizer, then the benchmark of
# ccattn beside its peers (bench/run.py, bench/peers.py) and the plot. Logs and CSVs go to $OUT.
#   STEPS=build,test,bench,peers,plot (default: all)   CASES=a,b (default: all)   MASKS=native,...
# Expects CUTLASS headers and a GoogleTest source copy in .deps/ (scripts/setup.sh makes them).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/ccattn-session}
mkdir -p "$out"
steps=",${STEPS:-build,test,bench,peers,plot},"
has() { [[ $steps == *",$1,"* ]]; }
csv="$out/results.csv"
card=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv > "$out/gpu.txt" 2>&1

if has build; then
  echo "== build"
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCCATTN_SM80_ARCHS=90 -DCMAKE_CUDA_ARCHITECTURES=90 \
    > "$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
  start=$(date +%s)
  cmake --build build -j "$(nproc)" > "$out/build.log" 2>&1 || { grep -E "error|Error" -A3 "$out/build.log" | head -60; exit 1; }
  echo "built in $(( $(date +%s) - start )) s"
fi
if has test; then
  echo "== GPU tests"
  OUT="$out" bash scripts/gpu_tests.sh > "$out/gpu-tests.log" 2>&1
  echo "gpu tests exit $?"
  grep -E "tests passed|tests failed|Failed|\*\*\*|ERROR SUMMARY|RACECHECK SUMMARY" "$out/gpu-tests.log" | head -40
fi
if has bench; then
  echo "== ccattn benchmark"
  python3 bench/run.py --ccattn build/src/cli/ccattn --csv "$csv" --card "$card" --cases "${CASES:-}" \
    --masks "${MASKS:-native,block_sparse,mask_mod}" > "$out/bench.log" 2>&1
  grep -E "forward|backward|error" "$out/bench.log" | head -80
fi
if has peers; then
  echo "== peers"
  PYTHONUNBUFFERED=1 python3 bench/peers.py --csv "$csv" --cases "${CASES:-}" > "$out/peers.log" 2>&1
  grep -vE "^#|Warning|warn" "$out/peers.log" | tail -60
fi
if has plot && [ -e "$csv" ]; then
  python3 bench/plot.py "$csv" "$out/results.png" > "$out/plot.log" 2>&1 || tail -5 "$out/plot.log"
fi
