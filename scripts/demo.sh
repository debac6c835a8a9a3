#!/usr/bin/env bash
# The main job: builds, then runs a demonstration case on the GPU when there is one, else the CPU
# backend on a small case: what it computed, how fast, and its check against an fp64 reference.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
./build/src/cli/ccattn demo
