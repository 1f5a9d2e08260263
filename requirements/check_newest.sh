#!/usr/bin/env bash
# Does the suite still pass with the newest versions the ranges allow? A throwaway environment with the ranges of
# requirements/dev.in (not the lock), the versions that matter printed, then the README's test command. Run it before
# refreshing the lock (requirements/lock.sh --upgrade), and note the date and versions in BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
# shellcheck disable=SC1091
. "$work/venv/bin/activate"
pip install -q --upgrade pip
pip install -q --upgrade -r requirements/dev.in
pip list --format=freeze | grep -iE '^(torch|transformers|accelerate|datasets|tokenizers|peft|tyro|safetensors|huggingface.hub|lm.eval|sentence.transformers|pytest)=='
python -m pytest -q
