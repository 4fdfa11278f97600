#!/usr/bin/env bash
# CPU-only CI: install the test extras and run the README's test command, nothing else.
#
# Runs from a clean clone (as root or not, no GPU). Uses a virtual environment inside the clone
# (.venv-ci, git-ignored) so nothing outside it changes; falls back to the system python3 when the
# venv module is missing. pytest's exit code 5 ("no tests collected") is a failure, not a success.
set -uo pipefail

cd "$(dirname "$0")/.."
export CI="${CI:-true}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
unset GPUBACKPROP_BACKEND GPUBACKPROP_KERNEL_DIR

VENV=.venv-ci
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" || { echo "ci/cpu.sh: python3 -m venv failed; using the system python3" >&2; rm -rf "$VENV"; }
fi
if [ -x "$VENV/bin/python" ]; then
    # shellcheck disable=SC1091
    . "$VENV/bin/activate"
else
    # No venv: install for the system interpreter (PEP 668 systems need the override).
    export PIP_BREAK_SYSTEM_PACKAGES=1
    python() { python3 "$@"; }
    pip() { python3 -m pip "$@"; }
fi
python --version

# The README's test command, verbatim (tests/test_packaging.py checks that it is).
pip install '.[test]' && python -m pytest
rc=$?

if [ "$rc" -eq 5 ]; then
    echo "ci/cpu.sh: pytest collected no tests (exit code 5): failing" >&2
    exit 1
fi
exit "$rc"
