"""The skip summary stays readable: one short line per kind of skip (tests/conftest.py raises every
no-device skip in one place, so `pytest -ra` folds a kind into one line), not a 400-character probe
message repeated once per test, which hid a failure among 66 lines."""
import os
import pathlib
import subprocess
import sys

import pytest
from conftest import DEVICE_USABLE, skip

from gpubackprop.backends import probe_cupy

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_no_device_skips_fold_into_one_short_line_per_kind():
    if probe_cupy() is None:
        skip(DEVICE_USABLE)  # nothing is skipped for want of one
    # Two files with many gpu tests and one with the cupy half of the backend fixture.
    files = ["tests/test_tf32_gpu.py", "tests/test_gpu.py", "tests/test_lesson.py"]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-ra", "-p", "no:cacheprovider", *files],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    skipped = [line for line in done.stdout.splitlines() if line.startswith("SKIPPED")]
    assert sum(int(line.split("[")[1].split("]")[0]) for line in skipped) > 20  # they did skip
    assert len(skipped) == 2, skipped  # gpu tests; the cupy backend of the `backend` fixture
    assert all(len(line) < 160 for line in skipped), skipped
    assert any("gpu test: no usable CUDA device" in line for line in skipped)
    assert any("cupy backend: no usable CUDA device" in line for line in skipped)
    assert done.stdout.count(probe_cupy()) == 1  # the full reason and its fix, once, at the end
