#!/usr/bin/env bash
# Installs cobra-hf with its test extras into ./.venv (CPU torch first) and runs the test suite.
# Usage: bash scripts/run_tests.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then "$PYTHON" -m venv .venv; fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch first: a bare `torch` requirement would pull a multi-GB CUDA build
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[test]"
set +e
python -m pytest tests -q -n 2 "$@"
status=$?
set -e
# pytest exits 5 when no tests were collected (e.g. a filter matched nothing): not a failure
if [ "$status" -eq 5 ]; then echo "pytest: no tests collected"; exit 0; fi
exit "$status"
