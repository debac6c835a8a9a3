#!/usr/bin/env bash
# FlashAttention-4 (pip flash-attn-4, CuTe DSL; Hopper and Blackwell kernels, also FlexAttention's
# FLASH backend) as a benchmark peer on a GPU machine without network that receives at most ~64 MB of
# files per run. Its compiler library is a 92 MB wheel, so it goes over in two halves and is put
# together there, in /root/fa4, which lasts as long as that machine does. (A versioned copy of
# ../shared/peers/fa4.sh; bench/device_session.sh runs it.)
#
#   here:   bash bench/fa4.sh fetch .peers/fa4   # pip download (PyPI) + split into .peers/fa4/a (46 MB)
#           and .peers/fa4/b (54 MB); ignore /.peers/ (.git/info/exclude) so they travel only when carried.
#   run 1:  carry .peers/fa4/a (+ the project);  bash bench/fa4.sh stage .peers/fa4
#   run 2:  carry .peers/fa4/b;                  bash bench/fa4.sh stage .peers/fa4 &&
#           export PYTHONPATH=$(bash bench/fa4.sh pythonpath); python3 bench/peers.py ...
# `stage` copies whichever half it finds to /root/fa4/parts and, once both are there, installs all
# into /root/fa4/site (idempotent). Run 2 leaves ~10 MB of room beside half b: keep what later runs
# need outside the checkout (e.g. cmake -B /root/build in run 1), or send the CUTLASS headers
# compressed (their tar.xz is ~1 MB). A fresh machine has no /root/fa4: stage again from run 1.
# From Python:  from flash_attn.cute import flash_attn_func               (FA4 itself; returns (out, lse))
#               flex_attention(..., kernel_options={"BACKEND": "FLASH"})  (FlexAttention on FA4 kernels)
set -euo pipefail
VERSION_FA4=4.0.0b36
VERSION_DSL=4.8.1
cmd=${1:-}; dir=${2:-.peers/fa4}
root=/root/fa4
case "$cmd" in
  fetch)
    mkdir -p "$dir/a" "$dir/b" "$dir/whl"
    plat=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
          --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64
          --platform manylinux2014_x86_64)
    python3 -m pip download -q --no-deps "${plat[@]}" -d "$dir/whl" \
      "flash-attn-4==$VERSION_FA4" "nvidia-cutlass-dsl==$VERSION_DSL" "nvidia-cutlass-dsl-libs-base==$VERSION_DSL" \
      "nvidia-cutlass-dsl-libs-core==$VERSION_DSL" "nvidia-cutlass-dsl-libs-cu13==$VERSION_DSL" \
      "apache-tvm-ffi==0.1.15.post2" "torch-c-dlpack-ext==0.1.5" "quack-kernels==0.6.5"
    big=$(ls "$dir"/whl/nvidia_cutlass_dsl_libs_cu13-*.whl)
    rm -f "$dir"/a/* "$dir"/b/*
    split -n 2 -d "$big" "$dir/a/libs-cu13.part"
    mv "$dir/a/libs-cu13.part01" "$dir/b/"
    sha256sum "$big" | awk '{print $1}' > "$dir/b/libs-cu13.sha256"
    echo "$(basename "$big")" > "$dir/b/libs-cu13.name"
    for w in "$dir"/whl/*.whl; do [ "$w" = "$big" ] || mv "$w" "$dir/b/"; done
    rm -rf "$dir/whl"
    du -sh "$dir/a" "$dir/b"
    ;;
  stage)
    mkdir -p "$root/parts"
    for half in a b; do [ -d "$dir/$half" ] && cp -n "$dir/$half"/* "$root/parts/" 2>/dev/null || true; done
    p=$root/parts
    if [ -e "$root/site/.ready" ]; then echo "fa4: ready in $root/site"; exit 0; fi
    if [ ! -e "$p/libs-cu13.part00" ] || [ ! -e "$p/libs-cu13.part01" ]; then
      echo "fa4: staged $(ls "$p" | wc -l) files; carry the other half in the next call"; exit 0; fi
    name=$(cat "$p/libs-cu13.name")
    cat "$p/libs-cu13.part00" "$p/libs-cu13.part01" > "$p/$name"
    echo "$(cat "$p/libs-cu13.sha256")  $p/$name" | sha256sum -c --quiet
    rm -rf "$root/site"; mkdir -p "$root/site"
    python3 - "$p" "$root/site" <<'PY'
import glob, sys, zipfile
for w in sorted(glob.glob(sys.argv[1] + "/*.whl")):
    zipfile.ZipFile(w).extractall(sys.argv[2])  # merge: several wheels share nvidia_cutlass_dsl/
PY
    PYTHONPATH="$root/site:$root/site/nvidia_cutlass_dsl/dsl_packages" python3 -c "import flash_attn.cute, cutlass" \
      && touch "$root/site/.ready" && echo "fa4: ready in $root/site"
    ;;
  pythonpath)
    echo "$root/site:$root/site/nvidia_cutlass_dsl/dsl_packages"
    ;;
  *)
    sed -n '2,21p' "$0"; exit 2
    ;;
esac
