#!/usr/bin/env bash
# The Python package on the GPU machine: install (no network, no build isolation), run the pytest
# suite (CPU and CUDA), then train the example LM. Logs go to $OUT when set, else build/python-logs.
#   bash python/run_gpu_tests.sh [install] [test] [example]     (no argument: all three)
# Needs PyTorch, scikit-build-core, ninja, cmake and, for the CUDA backend, nvcc and the CuTe headers
# in .deps/cutlass (scripts/setup.sh; carry them to a machine without network).
set -euo pipefail
cd "$(dirname "$0")/.."
logs="${OUT:-build/python-logs}"
mkdir -p "$logs"
phases=("$@")
[ ${#phases[@]} -gt 0 ] || phases=(install test example)
python=${PYTHON:-python3}

for phase in "${phases[@]}"; do
  case "$phase" in
    install)
      if command -v nvcc >/dev/null && [ ! -e .deps/cutlass/cutlass_library/source/include/cute/tensor.hpp ]; then
        echo "run_gpu_tests: nvcc found but no CuTe headers in .deps/cutlass (run scripts/setup.sh)" >&2
        exit 1
      fi
      echo "== pip install --no-build-isolation . (log: $logs/install.log)"
      CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
        "$python" -m pip install --no-build-isolation --no-deps --no-index -v . >"$logs/install.log" 2>&1 \
        || { tail -40 "$logs/install.log"; exit 1; }
      "$python" -c "import torch, ccattn; print('ccattn', ccattn.__version__, 'torch', torch.__version__, 'cuda', torch.cuda.is_available())" \
        | tee -a "$logs/install.log"
      ;;
    test)
      echo "== pytest python/tests (log: $logs/pytest.log)"
      "$python" -m pytest -v -rs --durations=15 --junitxml="$logs/pytest.xml" python/tests \
        >"$logs/pytest.log" 2>&1 || { tail -60 "$logs/pytest.log"; exit 1; }
      tail -3 "$logs/pytest.log"
      ;;
    example)
      echo "== examples/train_nsa_lm.py, generate_nsa_lm.py (logs: $logs/train*.log, generate.log)"
      "$python" examples/train_nsa_lm.py --steps 300 2>&1 | tee "$logs/train.log"
      "$python" examples/train_nsa_lm.py --steps 100 --compile 2>&1 | tee "$logs/train_compile.log"
      "$python" examples/generate_nsa_lm.py --steps 300 2>&1 | tee "$logs/generate.log"
      ;;
    *)
      echo "run_gpu_tests: unknown phase '$phase' (install, test, example)" >&2
      exit 2
      ;;
  esac
done
