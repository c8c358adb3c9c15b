#!/usr/bin/env bash
# The GPU check, one run on a GPU machine (at most 8 minutes on an H100/H200):
#   bash benchmarks/gpu_check.sh            # tests marked gpu, then benchmarks/gpu_check.py
#   bash benchmarks/gpu_check.sh --cpu      # a tiny model on the CPU (the test suite's run)
# Further arguments go to gpu_check.py (--model FOLDER, --output FILE). hir runs from this
# working tree; what the GPU image lacks (pytest) installs from .gpu-bundle/ (`make gpu-bundle`),
# since the machine reaches no network. How to run it: docs/distributed.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
if [[ "${1:-}" == "--cpu" ]]; then
    exec "$PYTHON" benchmarks/gpu_check.py "$@"
fi
if ! "$PYTHON" -c "import pytest" 2>/dev/null; then
    "$PYTHON" -m pip install --quiet --no-index --find-links .gpu-bundle/wheels pytest
fi
"$PYTHON" -m pytest tests/test_gpu.py -m gpu -q -p no:cacheprovider
"$PYTHON" benchmarks/gpu_check.py "$@"
