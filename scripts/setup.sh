#!/usr/bin/env bash
# Create .venv (if needed) and install gibbsebm with its test/docs/ray extras.
# CPU torch: `pip install torch==2.13.0` is taken only when torch is not importable yet.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
if ! python -c "import torch" >/dev/null 2>&1; then
  python -m pip install -q torch==2.13.0 || python -m pip install -q "torch>=2.1,<3" --index-url https://download.pytorch.org/whl/cpu
fi
EXTRAS=${GIBBSEBM_EXTRAS:-tests,examples,docs}
python -m pip install -q -e ".[${EXTRAS}]"
