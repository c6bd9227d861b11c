#!/usr/bin/env bash
# The test command the README names: the whole suite on CPU; Lean/GPU/network tests skip with their reason.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec python -m pytest -q "$@"
