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
