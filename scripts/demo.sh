#!/usr/bin/env bash
# Set up the environment and run the main demo (the README's demo command).
set -euo pipefail
cd "$(dirname "$0")/.."
GIBBSEBM_EXTRAS=examples bash scripts/setup.sh
. .venv/bin/activate
gibbsebm demo "$@"
