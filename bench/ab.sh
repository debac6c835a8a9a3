#!/usr/bin/env bash
# A/B of ccattn builds on the GPU machine: `main` (this checkout as it travels) and each variant (this
# checkout with patches applied), measured case by case, build by build in turn, into one CSV (impl
# `ccattn@<label>`) and a PNG of the ratios to main (bench/plot_ab.py). All builds share one source
# copy and one build folder under $AB_DIR: each variant's patches are applied, the CLI is rebuilt
# incrementally (only what they touch) and kept as $AB_DIR/bin/ccattn-<label>, then the patches are
# taken off again. The label named in TEST also gets its GPU tests built and run, with the sanitizer
# subsets (scripts/gpu_tests.sh), before any timing. Built labels are kept while the machine stays
# warm, so a call that ran out of time is completed by repeating it.
#
# Patches are tracked files (bench/next/*.patch), so nothing is prepared here. Carry
# [".deps/cutlass.tar.xz"] (scripts/setup.sh + `tar -cJf .deps/cutlass.tar.xz -C .deps
# cutlass/cutlass_library/source/include`), and ".deps/googletest" with TEST where the machine has
# no GoogleTest. For example:
#   VARIANTS="v40=bench/next/v40-dq-stmatrix.patch" TEST=v40 \
#     CASES=causal_16k_h16,causal_16k_h64kv8,cf4_16k_4k,nsa_64k bash bench/ab.sh
# Environment: VARIANTS (space-separated label=patch[+patch...], applied in that order), TEST (a
# label: its GPU tests and sanitizer subsets run first; empty: none), CASES (bench/cases.py names,
# default the forward's short and long representatives), MASKS (default native; band cases need
# band_tensors), PROFILE (label:case pairs, e.g. main:bwd_causal_16k: Nsight Compute on that label's
# binary after the builds, cases of device_build.sh's `profile`; the reports' pages come back in
# logs.tar.gz), BASELINE (0: main is neither built nor measured), NO_BWD (1: forward only), ROUNDS
# (passes over the cases, default 1), DET_CASES (cases whose backward also runs in deterministic
# mode, native band: rows bwd_det beside bwd, issue 10's "within 15% of the default"), BUDGET_S (no new build or run after that many seconds, default
# 480), AB_DIR (/root/ab), OUT (set by the device tool).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
start=$(date +%s)
stop_at=$((start + ${BUDGET_S:-480}))
checkout=$PWD
out=${OUT:-/tmp/ccattn-ab}
ab=${AB_DIR:-/root/ab}
logs=$ab/logs
csv=$ab/ab.csv
mkdir -p "$out" "$logs" "$ab/bin"
save() { cp "$csv" "$out/" 2>/dev/null; tar -czf "$out/logs.tar.gz" -C "$logs" . 2>/dev/null; true; }

declare -A patches_of=([main]="")
labels=(main)
[ "${BASELINE:-1}" = 1 ] || labels=()  # BASELINE=0: no main build this call (a later call can add it)
for v in ${VARIANTS:-}; do
  labels+=("${v%%=*}")
  patches_of[${v%%=*}]=${v#*=}
done

source bench/device_build.sh  # cute_include, googletest, configure_build
include=$(cute_include) || { echo "ab: no CuTe headers: carry .deps/cutlass or .deps/cutlass.tar.xz"; exit 1; }
tests=OFF
[ -n "${TEST:-}" ] && tests=$(googletest)  # before the source copy: it may add .deps/googletest

# One pristine source copy, made once per machine.
src=$ab/src
if [ ! -e "$src/CMakeLists.txt" ]; then
  mkdir -p "$src" && tar -cf - --exclude='./build*' --exclude=./.peers --exclude=./.git . | tar -xf - -C "$src"
fi
patch_tree() {  # patch file [-R]: git apply where git is, else patch(1)
  if command -v git > /dev/null; then (cd "$src" && git apply ${2:+"$2"} "$checkout/$1")
  else (cd "$src" && patch -p1 -s ${2:+"$2"} < "$checkout/$1"); fi
}
apply() {  # label [-R]: its patches on (in order) or off (in reverse order); $ab/applied names what is on
  local list i
  IFS=+ read -ra list <<< "${patches_of[$1]}"
  if [ "${2:-}" = -R ]; then
    for ((i = ${#list[@]} - 1; i >= 0; i--)); do patch_tree "${list[i]}" -R || return 1; done
    rm -f "$ab/applied"
  else
    for i in "${list[@]}"; do patch_tree "$i" || { echo "ab: $i does not apply"; return 1; }; done
    echo "$1" > "$ab/applied"
  fi
}
# `ccattn check` (against the fp64 reference) on a few small cases of every head-dim pair, backward
# and deterministic backward included, each within 60 s: before the TEST label's suite, so that a
# kernel that deadlocks (a barrier protocol gone wrong) ends the call in a minute with its name rather
# than holding every test to the suite's time limit. Exit 1 on a hang, 2 on a mismatch.
smoke() {  # ccattn binary, log
  local bin=$1 log=$2 rc=0 c
  local cases=(
    "--causal --seqlen-q 1000 --seqlen-k 1000 --heads-q 4 --heads-kv 2 --dim-qk 128 --dim-v 128"
    "--causal --seqlen-q 1000 --seqlen-k 1000 --heads-q 4 --heads-kv 2 --dim-qk 128 --dim-v 128 --deterministic"
    "--causal --compress-factor 16 --diag-offset -31 --seqlen-q 2000 --seqlen-k 130 --heads-q 16 --heads-kv 2 --dim-qk 192 --dim-v 128"
    "--causal --compress-factor 16 --diag-offset -31 --seqlen-q 2000 --seqlen-k 130 --heads-q 16 --heads-kv 2 --dim-qk 192 --dim-v 128 --deterministic"
    "--causal --compress-factor 4 --seqlen-q 700 --seqlen-k 200 --heads-q 4 --heads-kv 4 --dim-qk 256 --dim-v 256 --deterministic"
    "--causal --documents 300:120,0:0,700:250 --heads-q 8 --heads-kv 2 --dim-qk 64 --dim-v 64"
  )
  for c in "${cases[@]}"; do
    # shellcheck disable=SC2086
    timeout 60 "$bin" check --backend cuda --bwd $c >> "$log" 2>&1
    case $? in
      0) ;;
      124) echo "ab: smoke check hung (60 s): $c"; return 1 ;;
      *) echo "ab: smoke check failed: $c"; rc=2 ;;
    esac
  done
  return $rc
}

# A call cut short may have left a variant's patches on.
if [ -e "$ab/applied" ]; then apply "$(cat "$ab/applied")" -R || { echo "ab: $src is not pristine"; exit 1; }; fi

build=$ab/build
if [ ! -e "$build/build.ninja" ]; then
  configure_build "$src" "$build" "$include" "$tests" > "$logs/configure.log" 2>&1 || { tail -20 "$logs/configure.log"; exit 1; }
fi
# TEST last: its tests run on the build as it stands after its own.
order=()
for label in "${labels[@]}"; do [ "$label" = "${TEST:-}" ] || order+=("$label"); done
[ -n "${TEST:-}" ] && order+=("$TEST")
for label in "${order[@]}"; do
  [ -x "$ab/bin/ccattn-$label" ] && [ "$label" != "${TEST:-}" ] && continue
  [ "$label" = "${TEST:-}" ] && [ -e "$logs/gpu-tests-$label.done" ] && continue
  [ "$(date +%s)" -lt "$stop_at" ] || { echo "ab: budget spent before building $label"; save; exit 1; }
  apply "$label" || exit 1
  t0=$(date +%s)
  targets=(--target src/cli/ccattn)
  [ "$label" = "${TEST:-}" ] && targets=()
  if ! cmake --build "$build" -j "$(nproc)" "${targets[@]}" > "$logs/build-$label.log" 2>&1; then
    grep -E "error" -A3 "$logs/build-$label.log" | head -30
    apply "$label" -R
    save
    exit 1
  fi
  cp "$build/src/cli/ccattn" "$ab/bin/ccattn-$label"
  echo "== built $label in $(( $(date +%s) - t0 )) s"
  if [ "$label" = "${TEST:-}" ]; then
    smoke "$ab/bin/ccattn-$label" "$logs/smoke-$label.log"
    if [ $? = 1 ]; then apply "$label" -R; save; exit 1; fi
    BUILD_DIR="$build" OUT="$logs/tests-$label" bash "$src/scripts/gpu_tests.sh" > "$logs/gpu-tests-$label.log" 2>&1
    echo "gpu tests of $label: exit $?"
    grep -E "tests passed|tests failed|\*\*\*(Failed|Exception|Timeout)|ERROR SUMMARY|RACECHECK SUMMARY" "$logs/gpu-tests-$label.log" | head -30
    touch "$logs/gpu-tests-$label.done"
  fi
  apply "$label" -R || { echo "ab: the patches of $label do not come off"; exit 1; }
  save
done

PROFILE=${PROFILE:-}
for pc in ${PROFILE//,/ }; do  # label:case pairs, each label's binary under Nsight Compute
  [ "$(date +%s)" -lt "$stop_at" ] || { echo "ab: budget spent before profiling $pc"; break; }
  [ -e "$logs/ncu-${pc//:/-}.txt" ] || profile "$ab/bin/ccattn-${pc%%:*}" "$logs" "$pc"
  save
done

echo "== cases"
card=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
extra=()  # one round: a repeated call measures only what the CSV lacks
[ "${NO_BWD:-0}" = 1 ] && extra+=(--no-bwd)
[ "${ROUNDS:-1}" = 1 ] && extra+=(--resume)
IFS=, read -ra cases <<< "${CASES:-nsa_b16_s2k,nsa_b8_s4k,varlen_6docs_cf16,nsa_64k,causal_16k_h16,cf64_128k_h16kv1}"
for round in $(seq "${ROUNDS:-1}"); do
  for c in "${cases[@]}"; do
    for label in "${labels[@]}"; do
      [ "$(date +%s)" -lt "$stop_at" ] || { echo "ab: budget spent before $c / $label (round $round)"; break 3; }
      python3 bench/run.py --ccattn "$ab/bin/ccattn-$label" --csv "$csv" --card "$card" --cases "$c" \
        --masks "${MASKS:-native}" --impl "ccattn@$label" "${extra[@]}" --stop-at "$stop_at" \
        >> "$logs/bench.log" 2>&1
      grep -E "^$c .*ccattn@$label" "$logs/bench.log" | tail -2
      save  # a call cut short still brings back every row measured
    done
  done
done
IFS=, read -ra det_cases <<< "${DET_CASES:-}"
for c in "${det_cases[@]}"; do
  for label in "${labels[@]}"; do
    [ "$(date +%s)" -lt "$stop_at" ] || { echo "ab: budget spent before $c / $label (deterministic)"; break 2; }
    python3 bench/run.py --ccattn "$ab/bin/ccattn-$label" --csv "$csv" --card "$card" --cases "$c" --masks native \
      --deterministic --impl "ccattn@$label" --resume --stop-at "$stop_at" >> "$logs/bench.log" 2>&1
    grep -E "^$c .*ccattn@$label .*bwd_det" "$logs/bench.log" | tail -1
    save
  done
done
impls=()
for label in "${labels[@]}"; do impls+=("ccattn@$label"); done
python3 bench/plot_ab.py "$csv" "$out/ab.png" "${impls[@]}" --title "A/B, $card" \
  > "$logs/plot.log" 2>&1 || tail -3 "$logs/plot.log"
save
echo "== done ($(( $(date +%s) - start )) s)"
