"""ci/gpu.sh, the one prepared device run, on a machine without a usable CUDA device: it states its
stages and their limits (the whole within 420 s, one device command's 600 s with room), skips the
device stages with the reason, writes its logs under $OUT and exits 0."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DEVICE_USABLE, skip

from gpubackprop.backends import probe_cupy

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.requires("no bash or timeout" if shutil.which("bash") is None or shutil.which("timeout") is None else None)
def test_gpu_script_without_a_device_skips_cleanly_and_states_its_stages(tmp_path):
    if probe_cupy() is None:
        skip(DEVICE_USABLE)  # ci/gpu.sh would run its device stages (minutes)
    env = dict(os.environ, OUT=str(tmp_path / "out"), PYTHON=sys.executable)
    done = subprocess.run(["bash", str(REPO / "ci" / "gpu.sh")], capture_output=True, text=True, env=env,
                          timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    header = re.search(r"ci/gpu.sh: stages (.*); whole run <= (\d+) s", done.stdout)
    assert header, done.stdout
    limits = {name: int(limit) for name, limit in re.findall(r"([\w-]+) (\d+) s", header.group(1))}
    assert list(limits) == ["versions", "gpu-tests", "bench", "bench-tf32", "kernels", "summary"]
    assert limits["gpu-tests"] <= 240 and sum(limits.values()) <= int(header.group(2)) <= 420
    summary = done.stdout[done.stdout.index("ci/gpu.sh summary"):]
    for stage in ("gpu-tests", "bench", "bench-tf32", "kernels"):
        assert re.search(rf"^{stage} +\d+s +0s +skipped: no usable CUDA device: ", summary, re.M), summary
    assert re.search(r"^versions +30s +\d+s +ok", summary, re.M), summary
    assert "NOTHING RAN ON HARDWARE" in summary and summary.rstrip().endswith("ci/gpu.sh: exit 0")
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"1-versions.log", "6-summary.log"}
