"""Choosing a backend: auto, explicit, the environment variable, bad names, and CuPy that cannot run.

The "CuPy installed, no GPU" case is the real one on CPU-only machines (CI installs a CuPy wheel);
"CuPy not installed", "CuPy broken" and "driver too old" are simulated by swapping what
``import cupy`` returns.
"""
import inspect
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy
import pytest
from conftest import DEVICE_USABLE, skip

import gpubackprop as gb
from gpubackprop import backends
from gpubackprop.backends import BACKEND_NAMES, ENV_VAR, CupyBackend, NumpyBackend, cupy_backend, describe, probe_cupy

REPO = Path(__file__).resolve().parent.parent


def cupy_importable():
    try:
        import cupy  # noqa: F401
    except Exception:
        return False
    return True


@pytest.fixture
def fresh_detection(monkeypatch):
    """Forget the memoised CuPy probe and the backend instances, and restore them afterwards."""
    saved_problem, saved_instances = list(cupy_backend._probe_memo), dict(backends._instances)
    cupy_backend._probe_memo.clear()
    backends._instances.clear()
    monkeypatch.delenv(ENV_VAR, raising=False)
    yield
    cupy_backend._probe_memo[:] = saved_problem
    backends._instances.clear()
    backends._instances.update(saved_instances)


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)


# ---------------------------------------------------------------------- selection
def test_explicit_numpy(no_env):
    backend = gb.get_backend("numpy")
    assert isinstance(backend, NumpyBackend)
    assert backend.name == "numpy" and backend.spec == "numpy" and backend.device == "cpu"
    assert isinstance(backend.empty((2, 3), numpy.float32), numpy.ndarray)
    assert gb.get_backend("numpy") is backend  # created once, shared
    assert gb.get_backend(" NumPy ") is backend  # names are trimmed and case-insensitive
    assert gb.get_backend(backend) is backend  # a Backend passes through


def test_auto_picks_cupy_exactly_when_usable(no_env):
    expected = "numpy" if probe_cupy() else "cupy"
    assert gb.get_backend("auto").name == expected
    assert gb.get_backend().name == expected  # None and no environment variable: auto
    devices = [] if probe_cupy() else [f"cupy:{i}" for i in range(CupyBackend.device_count())]
    assert gb.available_backends() == ["numpy", *devices]


def test_environment_variable_chooses_when_no_name_is_given(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "numpy")
    assert gb.get_backend().name == "numpy"
    assert gb.MLP([2, 1]).backend.name == "numpy"


def test_explicit_name_beats_the_environment_variable(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "no-such-backend")
    assert gb.get_backend("numpy").name == "numpy"


def test_unknown_name_from_the_environment_variable(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "tpu")
    with pytest.raises(ValueError) as info:
        gb.get_backend()
    message = str(info.value)
    assert "'tpu'" in message and ENV_VAR in message
    assert all(name in message for name in BACKEND_NAMES)


@pytest.mark.parametrize("bad", ["torch", "", "gpu", 3])
def test_unknown_name_lists_the_valid_ones(no_env, bad):
    with pytest.raises(ValueError) as info:
        gb.get_backend(bad)
    assert all(name in str(info.value) for name in BACKEND_NAMES)


def test_mlp_accepts_a_backend_or_a_name(no_env):
    assert gb.MLP([2, 1], backend="numpy").backend is gb.get_backend("numpy")
    assert gb.MLP([2, 1], backend=gb.get_backend("numpy")).backend.name == "numpy"
    with pytest.raises(ValueError):
        gb.MLP([2, 1], backend="nope")


# ---------------------------------------------------------------------- CuPy unusable: the real case
@pytest.mark.requires(None if cupy_importable() else "cupy not installed")  # (CI installs it for this test)
def test_cupy_installed_but_no_device_real(no_env):
    import cupy

    if cupy.is_available():
        skip(DEVICE_USABLE)
    problem = probe_cupy()
    assert problem is not None
    assert f"CuPy {cupy.__version__} is installed" in problem  # why: CuPy is there ...
    assert "to fix" in problem and "pip install 'cupy-cuda12x>=14'" in problem and "'cupy-cuda13x>=14'" in problem
    assert "gpubackprop[" not in problem  # not on PyPI: a hint naming it would fail
    assert gb.available_backends() == ["numpy"]
    assert gb.get_backend("auto").name == "numpy"
    assert gb.get_backend().name == "numpy"
    with pytest.raises(gb.BackendUnavailableError) as info:
        gb.get_backend("cupy")
    message = str(info.value)
    assert "cupy backend is unavailable" in message
    assert "installed but" in message and "to fix" in message
    with pytest.raises(gb.BackendUnavailableError):
        gb.MLP([2, 1], backend="cupy")


def test_cupy_unusable_is_a_runtime_error_with_a_fix(no_env):
    if probe_cupy() is None:
        skip(DEVICE_USABLE)
    with pytest.raises(RuntimeError) as info:  # BackendUnavailableError is a RuntimeError
        gb.get_backend("cupy")
    assert isinstance(info.value, gb.BackendUnavailableError)
    assert "pip install" in str(info.value)


def test_env_override_to_cupy_when_unusable_raises(monkeypatch):
    if probe_cupy() is None:
        skip(DEVICE_USABLE)
    monkeypatch.setenv(ENV_VAR, "cupy")
    with pytest.raises(gb.BackendUnavailableError):
        gb.get_backend()


# ---------------------------------------------------------------------- CuPy unusable: simulated
def test_cupy_not_installed_simulated(fresh_detection, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` raise ImportError
    assert probe_cupy(short=True) == "CuPy not installed"
    assert gb.available_backends() == ["numpy"]
    assert gb.get_backend().name == "numpy"
    with pytest.raises(gb.BackendUnavailableError) as info:
        gb.get_backend("cupy")
    message = str(info.value)
    assert "CuPy not installed" in message and "ModuleNotFoundError" in message  # why, with the cause
    assert "pip install 'cupy-cuda12x>=14'" in message  # how to fix (gpubackprop itself is not on PyPI)
    assert "pip install '.[cuda12]'" in message and "gpubackprop[" not in message
    assert describe(gb.get_backend("numpy")) == "numpy (CPU; CuPy not installed)"


class _RaisingFinder:
    """A meta path finder whose `import cupy` fails with something other than ImportError."""

    def find_spec(self, name, path=None, target=None):
        if name == "cupy":
            raise RuntimeError("CUDA path misconfigured")
        return None


def test_cupy_broken_import_simulated(fresh_detection, monkeypatch):
    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_RaisingFinder(), *sys.meta_path])
    assert probe_cupy(short=True) == "CuPy not importable"
    with pytest.raises(gb.BackendUnavailableError) as info:
        gb.get_backend("cupy")
    assert "RuntimeError: CUDA path misconfigured" in str(info.value)
    assert gb.get_backend("auto").name == "numpy"


def _fake_cupy(device_count=None, driver=None, runtime=None):
    """A stand-in for the cupy module: getDeviceCount returns device_count, or raises when None."""

    def get_device_count():
        if device_count is None:
            raise RuntimeError("cudaErrorInsufficientDriver")
        return device_count

    runtime_api = types.SimpleNamespace(
        getDeviceCount=get_device_count, driverGetVersion=lambda: driver, runtimeGetVersion=lambda: runtime)
    return types.SimpleNamespace(__version__="99.0", cuda=types.SimpleNamespace(runtime=runtime_api))


@pytest.mark.parametrize("fake, why", [
    (_fake_cupy(driver=12040, runtime=13000), "CUDA driver too old (it supports CUDA 12040, CuPy needs 13000)"),
    (_fake_cupy(driver=0, runtime=13000), "no CUDA driver found"),
    (_fake_cupy(driver=13000, runtime=13000), "no usable CUDA device"),
    (_fake_cupy(device_count=0), "no CUDA device"),
])
def test_cupy_device_problems_simulated(fresh_detection, monkeypatch, fake, why):
    monkeypatch.setitem(sys.modules, "cupy", fake)
    assert probe_cupy(short=True) == why
    with pytest.raises(gb.BackendUnavailableError) as info:
        gb.get_backend("cupy")
    message = str(info.value)
    assert why in message and "CuPy 99.0 is installed" in message and "to fix" in message
    assert gb.get_backend("auto").name == "numpy"


# ---------------------------------------------------------------------- import side effects
def _python(flags, code):
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, *flags, "-c", code], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def test_import_neither_warns_nor_imports_cupy():
    done = _python(["-W", "error"], "import sys, gpubackprop\n"
                                    "assert 'cupy' not in sys.modules, 'importing gpubackprop imported cupy'\n")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_default_backend_in_a_fresh_interpreter():
    # Where CuPy cannot run (CI: CuPy installed, no GPU), choosing the default backend must not
    # warn either; on a GPU machine CuPy's own import may, so -W error is kept to the first case.
    flags = ["-W", "error"] if probe_cupy() else []
    done = _python(flags, "import gpubackprop as gb\nprint(gb.get_backend().name)\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ("numpy" if probe_cupy() else "cupy")
    if probe_cupy():
        assert done.stderr == ""


# ---------------------------------------------------------------------- the interface
@pytest.mark.parametrize("cls", [NumpyBackend, CupyBackend])
def test_each_backend_implements_the_whole_interface_with_its_signatures(cls):
    # Importable without a GPU: cupy_backend imports only numpy at the top.
    from gpubackprop.backends.base import Backend

    assert not getattr(cls, "__abstractmethods__", None), f"{cls.__name__} leaves {cls.__abstractmethods__} out"
    for name in Backend.__abstractmethods__:
        parameters = lambda c: [(p.name, p.kind, p.default) for p in inspect.signature(getattr(c, name)).parameters.values()]  # noqa: E731
        assert parameters(cls) == parameters(Backend), name
    # The operations a training step runs are among them.
    assert {"matmul", "bias_activation", "activation_backward", "optimizer_step", "finite_check"} <= Backend.__abstractmethods__


def test_the_base_class_is_an_interface_only():
    """No operation of the base class has a body that runs: every backend says what it does."""
    from gpubackprop.backends.base import Backend

    with pytest.raises(TypeError, match="abstract"):
        Backend()
