# shellcheck shell=bash
# Sourced by the GPU machine's scripts (device_session.sh, ab.sh), from the checkout's root: where the
# CuTe headers and GoogleTest come from there, and the one CMake configuration their builds share.

cute_include() {  # the CuTe headers: carried in .deps/cutlass, or as .deps/cutlass.tar.xz (unpacked under /root)
  local known=.deps/cutlass/cutlass_library/source/include found
  if [ -e "$known/cute/tensor.hpp" ]; then realpath "$known"; return; fi
  if [ -e .deps/cutlass.tar.xz ]; then mkdir -p /root/deps && tar -xJf .deps/cutlass.tar.xz -C /root/deps; fi
  found=$(find /root/deps -path '*/cute/tensor.hpp' 2>/dev/null | head -1)
  [ -n "$found" ] && realpath "$(dirname "$found")/.."
}

googletest() {  # ON when the tests can be built: GoogleTest on the machine or carried in .deps/googletest
  if [ -e .deps/googletest/CMakeLists.txt ] || ls -d /usr/lib/*/cmake/GTest /usr/lib/cmake/GTest >/dev/null 2>&1; then
    echo ON
  elif [ -e /usr/src/googletest/CMakeLists.txt ]; then
    mkdir -p .deps && cp -r /usr/src/googletest .deps/googletest && echo ON
  else
    echo OFF
  fi
}

configure_build() {  # source dir, build dir, CuTe include dir, ON|OFF for the tests, further cmake arguments
  cmake -S "$1" -B "$2" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCCATTN_SM80_ARCHS=90 -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DCCATTN_CUTLASS_INCLUDE="$3" -DCCATTN_BUILD_TESTS="$4" "${@:5}"
}

ncu_pages() {  # ncu binary, logs dir, tag: the details page and SASS table of /root/ncu-<tag>.ncu-rep (the
  # report itself stays in /root, too large to come back), and its headline figures
  local ncu_bin=$1 logs=$2 tag=$3
  "$ncu_bin" -i "/root/ncu-$tag.ncu-rep" --page details > "$logs/ncu-$tag.txt" 2>&1
  "$ncu_bin" -i "/root/ncu-$tag.ncu-rep" --page source --csv --print-source sass > "$logs/sass-$tag.csv" 2>&1
  echo "== profile $tag"
  grep -E "Duration|Compute \(SM\) Throughput|Memory Throughput|Registers Per|Achieved Occupancy|Grid Size" \
    "$logs/ncu-$tag.txt" | head -15
}

profile_peer() {  # logs dir, impl:case (fa4:fwd_causal_16k, flex_flash:bwd_nsa_64k, ...): the peer's kernels
  # under Nsight Compute, one run inside bench/profile_peer.py's NVTX range (FA4 staged by bench/fa4.sh).
  local logs=$1 impl=${2%%:*} name=${2#*:} ncu_bin mask bench_case
  ncu_bin=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
  case $impl in fa4) mask=causal ;; flex_flash) mask=block_mask ;; *) echo "profile_peer: unknown peer $impl"; return 1 ;; esac
  case ${name#*_} in
    causal_16k) bench_case=causal_16k_h16 ;; nsa_64k) bench_case=nsa_64k ;; nsa_b16) bench_case=nsa_b16_s2k ;;
    cf4) bench_case=cf4_16k_4k ;; *) echo "profile_peer: unknown case $name"; return 1 ;;
  esac
  local tag="$impl-$name"
  timeout 400 "$ncu_bin" --clock-control none --nvtx --nvtx-include "profile/" -c 8 --set full -f -o "/root/ncu-$tag" \
    "${PYTHON:-python3}" bench/profile_peer.py "$impl" "$mask" "$bench_case" "${name%%_*}" > "$logs/ncu-$tag.log" 2>&1
  ncu_pages "$ncu_bin" "$logs" "$tag"
}

profile() {  # ccattn binary, logs dir, case name (below): Nsight Compute on its kernel launches
  local bin=$1 logs=$2 name=$3 ncu_bin kernel launches args
  ncu_bin=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
  local causal16k=(--causal --seqlen-q 16384 --seqlen-k 16384 --heads-q 16 --heads-kv 16)
  local nsa64k=(--causal --seqlen-q 65536 --seqlen-k 4095 --heads-q 64 --heads-kv 4 --compress-factor 16 --diag-offset -31)
  local nsa_b16=(--causal --batch 16 --seqlen-q 2048 --seqlen-k 127 --heads-q 64 --heads-kv 4 --compress-factor 16 --diag-offset -31)
  local cf4=(--causal --seqlen-q 16384 --seqlen-k 4096 --heads-q 16 --heads-kv 16 --compress-factor 4 --diag-offset 0)
  # *_bt: the same band as band tensors (bench/cases.py's edges, as bench/run.py writes them).
  band_files() {
    python3 -c "import sys; sys.path.insert(0, 'bench'); import cases, run
lo, hi, shape = cases.edges(cases.CASES['$1']); run.write_npy('/root/band-lo.npy', lo, shape); run.write_npy('/root/band-hi.npy', hi, shape)" &&
      echo --band-lo /root/band-lo.npy --band-hi /root/band-hi.npy
  }
  case ${name##*:} in
    bwd_causal_16k) kernel=backward_kernel launches=1 args=(--bwd "${causal16k[@]}") ;;
    bwd_nsa_64k)    kernel=backward_kernel launches=1 args=(--bwd "${nsa64k[@]}") ;;
    # Every kernel of one training-shape backward (preprocess, direct tiles, main, conversions): at
    # 127 keys a sequence the main kernel is not the whole time.
    bwd_nsa_b16)    kernel="backward|direct_tiles" launches=6 args=(--bwd "${nsa_b16[@]}") ;;
    fwd_causal_16k) kernel=forward_kernel launches=1 args=("${causal16k[@]}") ;;
    fwd_nsa_64k)    kernel=forward_kernel launches=1 args=("${nsa64k[@]}") ;;
    fwd_nsa_b16)    kernel=forward_kernel launches=1 args=("${nsa_b16[@]}") ;;
    fwd_cf4)        kernel=forward_kernel launches=1 args=("${cf4[@]}") ;;
    fwd_cf4_bt)     kernel=forward_kernel launches=1 args=("${cf4[@]}" $(band_files cf4_16k_4k)) ;;
    fwd_nsa_b16_bt) kernel=forward_kernel launches=1 args=("${nsa_b16[@]}" $(band_files nsa_b16_s2k)) ;;
    *) echo "profile: unknown case $name"; return 1 ;;
  esac
  name=${name//:/-}
  # The full set with per-instruction stall counts (SourceCounters): the SASS table says where it waits.
  timeout 240 "$ncu_bin" --clock-control none -k "regex:$kernel" -c "$launches" --set full -f -o "/root/ncu-$name" \
    "$bin" bench --backend cuda --iters 1 --warmup 0 "${args[@]}" > "$logs/ncu-$name.log" 2>&1
  ncu_pages "$ncu_bin" "$logs" "$name"
}
