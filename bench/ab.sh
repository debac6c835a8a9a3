#!/usr/bin/env bash
# A/B of ccattn builds on the GPU machine, in one call: `main` (this checkout as it travels) and each
# variant (this checkout with a patch applied), each built into $AB_DIR/<label> (the CLI; with the GPU
# tests for the label named in TEST), then every case run by each build in turn, case by case, into
# one CSV (impl `ccattn@<label>`) and a PNG of the ratios to main (bench/plot_ab.py).
#
# Patches are tracked files (bench/next/*.patch), so nothing is prepared here. Carry
# [".deps/cutlass.tar.xz"] (scripts/setup.sh + `tar -cJf .deps/cutlass.tar.xz -C .deps
# cutlass/cutlass_library/source/include`), and ".deps/googletest" with TEST where the machine has
# no GoogleTest. For example:
#   VARIANTS="v35=bench/next/v35-tile-entry.patch" TEST=v35 NO_BWD=1 \
#     CASES=nsa_b16_s2k,nsa_b8_s4k,varlen_6docs_cf16,chunked_16k,nsa_64k,causal_16k_h16 bash bench/ab.sh
# Environment: VARIANTS (space-separated label=patch), TEST (a label: its GPU tests and sanitizer
# subsets run first, scripts/gpu_tests.sh; empty: none), CASES (bench/cases.py names, default the
# forward's short and long representatives), MASKS (default native; band cases need band_tensors),
# NO_BWD (1: forward only), ROUNDS (passes over the cases, default 1), BUDGET_S (no new run after that
# many seconds, default 480), AB_DIR (/root/ab), OUT (set by the device tool).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
start=$(date +%s)
stop_at=$((start + ${BUDGET_S:-480}))
out=${OUT:-/tmp/ccattn-ab}
ab=${AB_DIR:-/root/ab}
logs=$ab/logs
csv=$out/ab.csv
mkdir -p "$out" "$logs"
variants=${VARIANTS:-}
labels=(main)
for v in $variants; do labels+=("${v%%=*}"); done

include=.deps/cutlass/cutlass_library/source/include
if [ ! -e "$include/cute/tensor.hpp" ]; then
  mkdir -p /root/cutlass && tar -xJf .deps/cutlass.tar.xz -C /root/cutlass || { echo "ab: no CuTe headers"; exit 1; }
  include=/root/cutlass/cutlass/cutlass_library/source/include
fi
include=$(realpath "$include")

# The sources of each build: main is this checkout; a variant, a copy with its patch applied.
source_of() { [ "$1" = main ] && pwd || echo "$ab/src-$1"; }
for v in $variants; do
  label=${v%%=*} patch=${v#*=}
  rm -rf "$ab/src-$label" && mkdir -p "$ab/src-$label"
  tar -cf - --exclude='./build*' --exclude=./.peers --exclude=./.git . | tar -xf - -C "$ab/src-$label"
  if ! (cd "$ab/src-$label" && git apply "$OLDPWD/$patch" 2>/dev/null || patch -p1 -s < "$OLDPWD/$patch"); then
    echo "ab: $patch does not apply"; exit 1
  fi
done

build() {  # label: configure and build its CLI (and the GPU tests for TEST) into $ab/<label>
  local label=$1 tests=OFF target=(src/cli/ccattn)
  [ "$label" = "${TEST:-}" ] && tests=ON && target=()
  cmake -S "$(source_of "$label")" -B "$ab/$label" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCCATTN_SM80_ARCHS=90 \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DCCATTN_CUTLASS_INCLUDE="$include" -DCCATTN_BUILD_TESTS=$tests \
    > "$logs/configure-$label.log" 2>&1 &&
    cmake --build "$ab/$label" -j "$(( $(nproc) / ${#labels[@]} + 1 ))" ${target:+--target "${target[@]}"} \
      > "$logs/build-$label.log" 2>&1
}
t0=$(date +%s)
for label in "${labels[@]}"; do build "$label" & done
failed=0
for job in $(jobs -p); do wait "$job" || failed=1; done
echo "== built ${labels[*]} in $(( $(date +%s) - t0 )) s"
if [ $failed -ne 0 ]; then
  for label in "${labels[@]}"; do grep -E "error" -A3 "$logs/build-$label.log" | head -20; done
  tar -czf "$out/logs.tar.gz" -C "$logs" .
  exit 1
fi

if [ -n "${TEST:-}" ]; then
  echo "== GPU tests of $TEST"
  BUILD_DIR="$ab/$TEST" OUT="$logs/tests-$TEST" bash "$(source_of "$TEST")/scripts/gpu_tests.sh" > "$logs/gpu-tests.log" 2>&1
  echo "gpu tests exit $?"
  grep -E "tests passed|tests failed|Failed|\*\*\*|ERROR SUMMARY|RACECHECK SUMMARY" "$logs/gpu-tests.log" | head -30
fi

echo "== cases"
nobwd=()
[ "${NO_BWD:-0}" = 1 ] && nobwd=(--no-bwd)
card=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
IFS=, read -ra cases <<< "${CASES:-nsa_b16_s2k,nsa_b8_s4k,varlen_6docs_cf16,nsa_64k,causal_16k_h16,cf64_128k_h16kv1}"
for round in $(seq "${ROUNDS:-1}"); do
  for c in "${cases[@]}"; do
    for label in "${labels[@]}"; do
      [ "$(date +%s)" -lt "$stop_at" ] || { echo "ab: budget spent before $c / $label (round $round)"; break 3; }
      python3 bench/run.py --ccattn "$ab/$label/src/cli/ccattn" --csv "$csv" --card "$card" --cases "$c" \
        --masks "${MASKS:-native}" --impl "ccattn@$label" "${nobwd[@]}" --stop-at "$stop_at" \
        >> "$logs/bench.log" 2>&1
      grep -E "^$c .*ccattn@$label" "$logs/bench.log" | tail -2
    done
  done
done
impls=()
for label in "${labels[@]}"; do impls+=("ccattn@$label"); done
python3 bench/plot_ab.py "$csv" "$out/ab.png" "${impls[@]}" --title "A/B, $card" \
  > "$logs/plot.log" 2>&1 || tail -3 "$logs/plot.log"
tar -czf "$out/logs.tar.gz" -C "$logs" .
echo "== done ($(( $(date +%s) - start )) s)"
