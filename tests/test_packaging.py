"""The wheel carries the CUDA sources and finds them once installed; CI runs the README's command."""
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import need

REPO = Path(__file__).resolve().parent.parent
KERNEL_NAMES = sorted(path.name for path in (REPO / "kernels").glob("*.cu"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    # No build isolation: the build backend comes from the test extras (no network needed).
    need("hatchling")
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(out), str(REPO)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    wheels = list(out.glob("gpubackprop-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.mark.slow
def test_wheel_contains_the_kernel_sources(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert KERNEL_NAMES, "no kernels/*.cu in the source tree"
    for name in KERNEL_NAMES:
        assert f"gpubackprop/kernels/{name}" in names, f"{name} missing from {wheel.name}"
        with zipfile.ZipFile(wheel) as archive:
            assert archive.read(f"gpubackprop/kernels/{name}") == (REPO / "kernels" / name).read_bytes()
    assert "gpubackprop/backends/cupy_backend.py" in names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "gpubackprop = gpubackprop.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


@pytest.mark.slow
def test_installed_wheel_finds_its_kernels(wheel, tmp_path):
    target = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                           "--target", str(target), str(wheel)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    code = (
        "import gpubackprop, gpubackprop.backends.cupy_backend as c\n"
        "print(gpubackprop.__file__)\n"
        "print(c.kernel_dir())\n"
        "src = c.kernel_source('float64')\n"
        "assert '#define GB_REAL double' in src and 'sgd_step' in src and 'GB_STATUS_GUARD' in src\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("GPUBACKPROP_KERNEL_DIR", "PYTHONPATH")}
    env["PYTHONPATH"] = str(target)
    # cwd outside the repository: the source tree's kernels/ must not be what is found.
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    package_file, kernel_dir = done.stdout.split()
    package = (target / "gpubackprop").resolve()
    assert Path(package_file).resolve().parent == package
    assert Path(kernel_dir).resolve() == package / "kernels"


def readme_test_command():
    """The fenced command the README gives for running the tests (the line that runs pytest)."""
    text = (REPO / "README.md").read_text()
    commands = [line.strip() for line in text.splitlines() if "pytest" in line and line.strip().startswith("pip install")]
    assert len(commands) == 1, f"expected one 'pip install ... pytest' command in README.md, found {commands}"
    return commands[0]


def test_ci_runs_exactly_the_readme_test_command():
    command = readme_test_command()
    script = (REPO / "ci" / "cpu.sh").read_text()
    assert command in script, f"ci/cpu.sh does not run the README's test command: {command}"
    assert re.search(r"\b5\b", script) and "exit" in script  # pytest's "no tests" code is handled
    assert "ci/cpu.sh" in (REPO / ".ci" / "run").read_text()
    assert os.access(REPO / ".ci" / "run", os.X_OK)
