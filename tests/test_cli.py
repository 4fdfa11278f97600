"""The ``gpubackprop`` command: demo (the lesson, checked), info, and --help."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DEVICE_USABLE, skip

from gpubackprop import cli, lesson
from gpubackprop.backends import ENV_VAR, probe_cupy

REPO = Path(__file__).resolve().parent.parent


def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_demo_prints_every_lesson_value_with_a_check_mark(capsys):
    code, out, _ = run_cli(capsys, "demo", "--backend", "numpy")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("backend: numpy (CPU")
    for label, printed in lesson.PRINTED:
        row = next((line for line in lines if line.split()[:1] == [label]), None)
        assert row is not None, f"{label} missing from the demo"
        assert row.rstrip().endswith("✓"), row
        assert f"{printed:.4f}" in row
    assert out.count("✓") == len(lesson.PRINTED)
    assert "✗" not in out
    assert f"all {len(lesson.PRINTED)} values match" in out


def test_demo_header_says_why_cupy_is_not_used(capsys, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    problem = probe_cupy(short=True)
    if problem is None:
        skip(DEVICE_USABLE)  # auto picks it
    code, out, _ = run_cli(capsys, "demo")
    assert code == 0
    assert out.splitlines()[0] == f"backend: numpy (CPU; {problem})"


def test_demo_fails_when_a_value_differs_from_the_lesson(capsys, monkeypatch):
    # The check must be able to fail: move one printed value by more than the tolerance.
    wrong = list(lesson.PRINTED)
    wrong[4] = (wrong[4][0], wrong[4][1] + 1e-3)
    monkeypatch.setattr(lesson, "PRINTED", wrong)
    code, out, _ = run_cli(capsys, "demo", "--backend", "numpy")
    assert code == 1
    assert out.count("✗") == 1 and f"FAILED: 1 of {len(wrong)}" in out


def test_demo_on_unusable_cupy_is_an_error_with_the_reason(capsys):
    if probe_cupy() is None:
        skip(DEVICE_USABLE)
    code, out, err = run_cli(capsys, "demo", "--backend", "cupy")
    assert code == 2
    assert "cupy backend is unavailable" in err and "to fix" in err


def test_demo_unknown_backend_is_an_error(capsys):
    code, _, err = run_cli(capsys, "demo", "--backend", "tpu")
    assert code == 2
    assert "valid names" in err


def test_info_lists_versions_and_backends(capsys):
    import numpy

    code, out, _ = run_cli(capsys, "info")
    assert code == 0
    assert "gpubackprop 0.1.0" in out
    assert f"numpy {numpy.__version__}" in out
    assert "backends available: numpy" in out
    if probe_cupy():
        assert f"cupy backend unavailable: {probe_cupy()}" in out
    else:
        assert "backends available: numpy, cupy" in out


@pytest.mark.parametrize("argv", [["--help"], ["demo", "--help"], ["info", "--help"]])
def test_help(capsys, argv):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: gpubackprop")
    if argv == ["--help"]:
        assert "demo" in out and "info" in out
    if argv[0] == "demo":
        assert "--backend" in out


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([])
    assert info.value.code == 2


def test_python_dash_m_demo():
    # The module entry point, in a fresh interpreter, as a user would start it.
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-m", "gpubackprop", "demo", "--backend", "numpy"], cwd=REPO,
                          env=env, capture_output=True, text=True, encoding="utf-8", timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("✓") == len(lesson.PRINTED)
