#!/usr/bin/env bash
# The whole benchmark on the GPU machine, from a clean checkout: ccattn (bench/run.py) and every peer
# (bench/peers.py: FA4, Flex FLASH, Flex Triton, SDPA) on every case of bench/cases.py, in one machine
# session and into ONE CSV, then the PNGs and the README table.
#
# That machine runs one command for at most 10 minutes, takes at most 64 MB of carried files per call,
# keeps /root between consecutive calls while it stays warm, and has no network. So the work spreads
# over calls that share /root: the build in $BUILD_DIR, the CSV in $CSV, FA4 in /root/fa4 (bench/fa4.sh).
# bench and peers resume (they skip what the CSV holds) and start nothing after $BUDGET_S seconds, so a
# call that ran out of time is completed by repeating it. Each call leaves in $OUT: results.csv (the
# CSV so far), logs.tar.gz (its logs and profiles), and with plot / table the PNGs and table.md.
#
# Here, once: FA4 from PyPI in two halves, and the CuTe headers (scripts/setup.sh puts them in .deps/):
#   echo /.peers/ >> "$(git rev-parse --git-common-dir)/info/exclude"   # the halves travel only when carried
#   bash bench/fa4.sh fetch .peers/fa4                                 # .peers/fa4/a 46 MB, .peers/fa4/b 54 MB
#   tar -cJf .deps/cutlass.tar.xz -C .deps cutlass/cutlass_library/source/include   # ~1 MB
# Call 1, carry [".peers/fa4/a", ".deps/cutlass.tar.xz"]:
#   STEPS=fa4,build,ceilings,bench,peers IMPLS=flex,sdpa_cudnn,sdpa_flash,sdpa_dense bash bench/device_session.sh
# Call 2, carry [".peers/fa4/b"]:
#   STEPS=fa4,bench,peers,plot,table bash bench/device_session.sh
# The last line says "complete" or "incomplete"; while incomplete, repeat call 2 (FA4 stays staged,
# nothing to carry). Then copy $OUT's results.csv and PNGs to bench/results/ and table.md into the README.
#
# Steps (STEPS, comma-separated; they run in this order):
#   fa4       stage the carried FA4 half (bench/fa4.sh stage $FA4_DIR); FA4 is importable once both arrived
#   build     configure and build into $BUILD_DIR: library, CLI and the PyTorch extension (CMake with
#             CCATTN_BUILD_PYTHON=ON, so the CUDA sources compile once for both); the extension and
#             python/ccattn/*.py are put together in $BUILD_DIR/pypkg, on PYTHONPATH for the peers' checks
#   test      the GPU tests with compute-sanitizer (scripts/gpu_tests.sh; builds the tests when they are
#             not built yet, which needs GoogleTest: on the machine, or carried in .deps/googletest)
#   pytest    the Python package's tests (CPU and CUDA) against the built extension, within $PYTEST_TIMEOUT s
#             (PYTEST_K: a -k expression)
#   profile   Nsight Compute (--clock-control none) on one launch of a kernel, the cases of PROFILE_CASES
#             (default the backward's causal 16K and NSA 64K; also bwd_nsa_b16, every kernel of that
#             backward, and fwd_causal_16k, fwd_nsa_64k, fwd_nsa_b16; a peer's as impl:case, e.g.
#             fa4:fwd_causal_16k or flex_flash:bwd_nsa_64k, with FA4 staged: bench/profile_peer.py):
#             throughput, warp stall reasons, occupancy and the per-instruction stall table, in the logs
#   ceilings  bf16 GEMM rate and device copy bandwidth (bench/ceilings.py)
#   bench     ccattn's rows (bench/run.py)           peers  the peers' rows (bench/peers.py)
#   plot      PNGs (bench/plot.py) into $OUT          table  the README tables (bench/table.py) to $OUT/table.md
# Environment: CASES (comma-separated, in this order; default all), MASKS (ccattn's mechanisms,
#   default native,block_sparse,mask_mod), IMPLS (peers, default all), BUILD_DIR (/root/build),
#   CSV (/root/results.csv), FA4_DIR (.peers/fa4), BUDGET_S (480: no new bench or peer work after that
#   many seconds of this call), PEER_REP_MS (each peer's timing window, default 200), OUT (set by the
#   device tool; /tmp/ccattn-session otherwise).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
start=$(date +%s)
out=${OUT:-/tmp/ccattn-session}
build=${BUILD_DIR:-/root/build}
csv=${CSV:-/root/results.csv}
fa4_dir=${FA4_DIR:-.peers/fa4}
stop_at=$((start + ${BUDGET_S:-480}))
steps=",${STEPS:-fa4,build,ceilings,bench,peers,plot,table},"
python=${PYTHON:-python3}
base_pythonpath=${PYTHONPATH:-}
incomplete=0
# The device tool returns at most 8 files from $OUT: results.csv, the PNGs, table.md and one archive of
# this call's logs (written to $logs, packed by save).
logs=${LOGS:-/root/session-logs}
rm -rf "$logs"
mkdir -p "$out" "$logs" "$(dirname "$csv")"
has() { [[ $steps == *",$1,"* ]]; }
save() {  # after every step: a call cut short keeps its rows and logs
  [ -e "$csv" ] && cp "$csv" "$out/results.csv"
  tar -czf "$out/logs.tar.gz" -C "$logs" . 2>/dev/null
  true
}
# Compiled kernels persist with /root, so a resumed call does not compile them again.
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-/root/.cache/torchinductor}
export TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-/root/.cache/triton}
export PYTHONUNBUFFERED=1

set_pythonpath() {  # ccattn's package from the build and FA4, where they are ready
  local p=""
  [ -d "$build/pypkg/ccattn" ] && p="$build/pypkg"
  [ -e /root/fa4/site/.ready ] && p="${p:+$p:}$(bash bench/fa4.sh pythonpath)"
  export PYTHONPATH="$p${base_pythonpath:+:$base_pythonpath}"
}

# cute_include, googletest, configure_build
source bench/device_build.sh

configure() {  # CuTe include dir, ON|OFF for the tests, further cmake arguments; log in $logs/configure.log
  configure_build . "$build" "$@" > "$logs/configure.log" 2>&1
}

set_pythonpath
card=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv > "$logs/gpu.txt" 2>&1
echo "== session: steps ${steps:1:-1}; build $build; csv $csv; stop new work at +${BUDGET_S:-480} s"
if ! has build && [ ! -d "$build" ]; then
  echo "session: no $build: this is a fresh machine (the last one was given back); start again from call 1"
fi

if has fa4; then
  echo "== fa4"
  bash bench/fa4.sh stage "$fa4_dir" 2>&1 | tail -3
  set_pythonpath
fi

if has build; then
  echo "== build"
  include=$(cute_include) || { echo "no CuTe headers: carry .deps/cutlass or .deps/cutlass.tar.xz"; exit 1; }
  tests=OFF
  has test && tests=$(googletest)
  # A cache made from another checkout path cannot be reused.
  if [ -e "$build/CMakeCache.txt" ] && ! grep -qx "CMAKE_HOME_DIRECTORY:INTERNAL=$PWD" "$build/CMakeCache.txt"; then
    echo "build: $build was configured from another checkout; starting it afresh"
    rm -rf "$build"
  fi
  if ! configure "$include" "$tests" -DCCATTN_BUILD_PYTHON=ON -DPython_EXECUTABLE="$(command -v "$python")"; then
    tail -15 "$logs/configure.log"
    echo "build: configuring with the PyTorch extension failed (above); building without it, so the peers run unchecked"
    configure "$include" "$tests" -DCCATTN_BUILD_PYTHON=OFF || { tail -30 "$logs/configure.log"; exit 1; }
  fi
  t0=$(date +%s)
  cmake --build "$build" -j "$(nproc)" > "$logs/build.log" 2>&1 || { grep -E "error|Error" -A3 "$logs/build.log" | head -60; exit 1; }
  echo "built in $(( $(date +%s) - t0 )) s"
  so=$(ls "$build"/python/_C*.so 2>/dev/null | head -1)
  if [ -n "$so" ]; then
    rm -rf "$build/pypkg" && mkdir -p "$build/pypkg/ccattn" && cp python/ccattn/*.py "$so" "$build/pypkg/ccattn/"
  fi
  set_pythonpath
  "$python" -c "import ccattn; print('ccattn', ccattn.__version__, 'importable from', ccattn.__file__)" 2>&1 | tail -1
fi

if has test; then
  echo "== GPU tests"
  if [ "$(grep -s '^CCATTN_BUILD_TESTS:BOOL=' "$build/CMakeCache.txt" | cut -d= -f2)" != ON ]; then
    tests=$(googletest)
    if [ "$tests" = ON ] && configure "$(cute_include)" ON && cmake --build "$build" -j "$(nproc)" >> "$logs/build.log" 2>&1; then
      echo "tests built"
    else
      echo "tests not built (GoogleTest missing, or see configure.log / build.log)"
    fi
  fi
  BUILD_DIR="$build" OUT="$logs" bash scripts/gpu_tests.sh > "$logs/gpu-tests.log" 2>&1
  echo "gpu tests exit $?"
  grep -E "tests passed|tests failed|Failed|\*\*\*|ERROR SUMMARY|RACECHECK SUMMARY" "$logs/gpu-tests.log" | head -40
fi

if has pytest; then
  echo "== pytest"
  # PYTEST_K: a -k expression (e.g. the CUDA tests only, when device time is short)
  timeout "${PYTEST_TIMEOUT:-300}" "$python" -m pytest -q -rs ${PYTEST_K:+-k "$PYTEST_K"} python/tests > "$logs/pytest.log" 2>&1
  echo "pytest exit $?"
  grep -E "passed|failed|FAILED|Error" "$logs/pytest.log" | tail -15
fi

if has profile; then
  echo "== profile"
  IFS=, read -ra wanted <<< "${PROFILE_CASES:-bwd_causal_16k,bwd_nsa_64k}"
  for c in "${wanted[@]}"; do
    case $c in  # impl:case is a peer's (FA4 staged), a bare case ccattn's
      *:*) profile_peer "$logs" "$c" ;;
      *) profile "$build/src/cli/ccattn" "$logs" "$c" ;;
    esac
    save
  done
fi

if has ceilings; then
  echo "== ceilings"
  "$python" bench/ceilings.py --csv "$csv" 2>&1 | tail -3
  save
fi

if has bench && [ ! -x "$build/src/cli/ccattn" ]; then
  echo "== ccattn benchmark: no $build/src/cli/ccattn (run the build step first)"
  incomplete=1
elif has bench; then
  echo "== ccattn benchmark"
  "$python" bench/run.py --ccattn "$build/src/cli/ccattn" --csv "$csv" --card "$card" --cases "${CASES:-}" \
    --masks "${MASKS:-native,block_sparse,mask_mod,band_tensors}" --resume --stop-at "$stop_at" > "$logs/bench.log" 2>&1
  rc=$?
  grep -vE "^(ccattn bench: |  )" "$logs/bench.log" | tail -70
  [ "$rc" -eq 0 ] || incomplete=1
  save
fi

if has peers; then
  echo "== peers"
  # Exit 4: a kernel fault lost the CUDA context; its row is written, so a new process goes on after it.
  for attempt in 1 2 3 4 5; do
    "$python" bench/peers.py --csv "$csv" --cases "${CASES:-}" --impls "${IMPLS:-}" --rep-ms "${PEER_REP_MS:-200}" \
      --resume --stop-at "$stop_at" \
      >> "$logs/peers.log" 2>&1
    rc=$?
    if [ "$rc" -ne 4 ] || [ "$(date +%s)" -ge "$stop_at" ]; then break; fi
    echo "peers: CUDA context lost; starting again (attempt $((attempt + 1)))"
  done
  grep -E "TFLOP/s|^peers\.py|^reference|^# [^ ]+: [0-9]+ s$" "$logs/peers.log" | tail -100
  [ "$rc" -eq 0 ] || incomplete=1
  save
fi

if has plot && [ -e "$csv" ]; then
  echo "== plot"
  "$python" bench/plot.py "$csv" "$out/" > "$logs/plot.log" 2>&1
  cat "$logs/plot.log"
fi

if has table && [ -e "$csv" ]; then
  echo "== table"
  "$python" bench/table.py "$csv" > "$out/table.md" 2>&1
  cat "$out/table.md"
fi

save
if [ $incomplete -eq 0 ]; then
  echo "== complete ($(( $(date +%s) - start )) s)"
else
  echo "== incomplete ($(( $(date +%s) - start )) s): work is left; repeat this call"
fi
