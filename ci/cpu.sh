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
# The test extra brings mpi4py and MPICH: here the distributed tests must run, never skip.
export GPUBACKPROP_REQUIRE_MPI=1
# The test extra brings mkdocs and mkdocstrings: here the documentation build must run, never skip.
export GPUBACKPROP_REQUIRE_DOCS=1
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

# torch for the DLPack interop tests, the CPU-only build (~190 MB): it is not in the test extra
# because PyPI's Linux torch is the CUDA build (~2.9 GB with its nvidia-* wheels). The README gives
# users this same command. Few retries: an index that cannot be reached (a machine with its own
# wheels, found through pip's find-links) fails fast instead of retrying for minutes. Where no CPU
# wheel can be had, PyPI's torch (the CUDA build, large but it runs on a CPU) is installed instead:
# CI runs the torch tests, it never skips them into green.
if ! pip install --retries 1 torch --index-url https://download.pytorch.org/whl/cpu; then
    echo "ci/cpu.sh: no CPU-only torch could be installed; installing PyPI's torch (the CUDA build) instead" >&2
    pip install torch || { echo "ci/cpu.sh: torch could not be installed: the interop tests cannot run" >&2; exit 1; }
fi
python -W ignore -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)' || true

# The README's test command, verbatim (tests/test_packaging.py checks that it is).
pip install '.[test]' && python -m pytest
rc=$?

if [ "$rc" -eq 5 ]; then
    echo "ci/cpu.sh: pytest collected no tests (exit code 5): failing" >&2
    exit 1
fi
exit "$rc"
