#!/usr/bin/env bash
# The CPU tests under a sanitizer, in a CPU-only build of their own:
#   bash scripts/sanitize.sh asan   AddressSanitizer + UndefinedBehaviorSanitizer (CI runs this), build-asan/
#   bash scripts/sanitize.sh tsan   ThreadSanitizer (the CPU backend's thread pool), build-tsan/
# Every report is an error (no recovery), so a clean run exits 0. Extra arguments go to ctest
# (e.g. -R Cli to run a subset).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?usage: scripts/sanitize.sh asan|tsan [ctest arguments]}
shift
case "$mode" in
  asan) flags="-fsanitize=address,undefined -fno-sanitize-recover=all" ;;
  tsan) flags="-fsanitize=thread" ;;
  *) echo "scripts/sanitize.sh: unknown mode '$mode' (asan or tsan)" >&2; exit 2 ;;
esac
bash scripts/setup.sh --cpu
build="build-$mode"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
[ -e "$build/CMakeCache.txt" ] || cmake -S . -B "$build" "${generator[@]}" -DCCATTN_ENABLE_CUDA=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS="$flags -fno-omit-frame-pointer" \
  -DCMAKE_EXE_LINKER_FLAGS="$flags"
cmake --build "$build" -j "$(nproc)"
# Leaks count as errors too; TSan's reports fail the test that caused them.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 TSAN_OPTIONS=halt_on_error=1
ctest --test-dir "$build" --output-on-failure -j "$(nproc)" "$@"
