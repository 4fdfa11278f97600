"""The CUDA sources compile with nvcc, without register spills, and hold every kernel CupyBackend calls.

No GPU is needed: nvcc compiles for sm_80 (A100) and sm_90 (H100/H200) offline. Skipped, with the
reason, where nvcc is absent. The flags mirror what CupyBackend gives NVRTC (--fmad=false).
"""
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy
import pytest

import threading

from gpubackprop.activations import NAMES as ACTIVATIONS
from gpubackprop.layouts import STATUS, TOTALS, cuda_defines
from gpubackprop.losses import NAMES as LOSSES
from gpubackprop.optimizers import RULES, Optimizer
from gpubackprop.backends.cupy_backend import CupyBackend, kernel_dir, kernel_source

REPO = Path(__file__).resolve().parent.parent
KERNEL_FILES = sorted((REPO / "kernels").glob("*.cu"))
ARCHS = ("sm_80", "sm_90")
REALS = ("float", "double")


def find_nvcc():
    found = shutil.which("nvcc")
    if found:
        return found
    for candidate in (os.environ.get("CUDA_HOME", ""), os.environ.get("CUDA_PATH", ""), "/usr/local/cuda"):
        if candidate and os.access(os.path.join(candidate, "bin", "nvcc"), os.X_OK):
            return os.path.join(candidate, "bin", "nvcc")
    return None


NVCC = find_nvcc()
needs_nvcc = pytest.mark.requires("nvcc not found" if NVCC is None else None)  # (on PATH, in CUDA_HOME or /usr/local/cuda)


def compile_with_ptxas_report(source: Path, real: str, tmp_path: Path):
    """nvcc's ptxas report for ``source`` compiled for every arch in ARCHS; fails on any error."""
    gencode = [flag for arch in ARCHS for flag in ("-gencode", f"arch=compute_{arch[3:]},code={arch}")]
    layouts = tmp_path / "layouts.h"  # the slot layouts' #defines, as kernel_source prepends them
    layouts.write_text(cuda_defines())
    command = [NVCC, f"-DGB_REAL={real}", "-fmad=false", "-Xptxas", "-v", *gencode, "-include", str(layouts),
               f"-I{REPO / 'kernels'}", "-c", str(source), "-o", str(tmp_path / "out.o")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    report = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(command)}\n{report}"
    assert not re.search(r"\berror\b", report, re.IGNORECASE), report
    return report


def entry_functions(report: str):
    """{(function, arch): (spill stores, spill loads)} from ptxas -v output."""
    found = {}
    current = None
    for line in report.splitlines():
        match = re.search(r"Compiling entry function '(\w+)' for '(sm_\d+)'", line)
        if match:
            current = match.groups()
            continue
        match = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if match and current is not None:
            found[current] = tuple(int(n) for n in match.groups())
            current = None
    return found


def test_kernel_sources_are_there():
    assert {path.name for path in KERNEL_FILES} >= {"activations.cu", "loss.cu", "checks.cu", "fit.cu",
                                                     *(f"optim_{name}.cu" for name in RULES)}


@needs_nvcc
@pytest.mark.parametrize("real", REALS)
@pytest.mark.parametrize("source", KERNEL_FILES, ids=lambda path: path.name)
def test_kernel_file_compiles_without_spills(source, real, tmp_path):
    functions = entry_functions(compile_with_ptxas_report(source, real, tmp_path))
    # Kernels written out (not those a macro stamps, whose template line ends in a backslash).
    plain = "\n".join(line for line in source.read_text().splitlines() if not line.rstrip().endswith("\\"))
    declared = set(re.findall(r'extern "C" __global__ void (\w+)\(', plain))
    names = {name for name, _ in functions}
    assert names, "ptxas reported no entry function"
    assert declared <= names  # macro-made kernels are found through ptxas, direct ones both ways
    for name in names:
        for arch in ARCHS:
            assert (name, arch) in functions, f"{name} not compiled for {arch}"
            assert functions[name, arch] == (0, 0), f"{name} on {arch} spills registers: {functions[name, arch]}"


def called_kernel_names():
    """Every kernel name CupyBackend asks for, found by running its methods with a recording stub."""
    return {name for name, _, _ in kernel_calls()}


def kernel_calls():
    """[(kernel name, dtype, arguments)] of every kernel launch CupyBackend's methods make, run
    with a recording stub (NumPy arrays standing in for CuPy's)."""
    calls = []

    def record(name, dtype):
        return lambda grid, block, args: calls.append((name, numpy.dtype(dtype).name, args))

    stub = object.__new__(CupyBackend)  # no __init__: no CuPy device needed
    stub.__dict__.update(_modules={}, _kernels={}, _constants={}, _max_blocks=1, _lock=threading.Lock(),
                         _capturing=threading.local())
    stub.xp = numpy
    stub.kernel = record
    stub.empty = lambda shape, dtype: numpy.empty(shape, dtype)  # scratch buffers, host-side here
    stub.copyto = numpy.copyto
    for dtype in ("float32", "float64"):
        x = numpy.zeros((3, 2), dtype)
        for activation in ACTIVATIONS:
            stub.bias_activation(x, numpy.zeros((1, 2), dtype), activation)
            stub.activation_backward(x, x, activation, numpy.zeros_like(x), scratch={})
            stub.activation_backward_bias(x, x, activation, numpy.zeros_like(x), numpy.zeros(2, dtype), {})
        stub.gather_rows_at(x, numpy.zeros(3, numpy.int64), numpy.zeros(1, numpy.int64), x)
        stub.gather_batch_at(x, x, numpy.zeros(3, numpy.int64), numpy.zeros(1, numpy.int64), x, x, {})
        stub.accumulate_step(numpy.zeros(len(STATUS), dtype), numpy.zeros(len(TOTALS)), 3)
        for loss in LOSSES:
            stub.loss_grad(loss, x, x, numpy.zeros_like(x), numpy.zeros((), dtype), numpy.zeros((), dtype), {})
            for output in ("identity", "sigmoid") if loss == "mse" else ("identity",):  # training's fused output layer
                stub.loss_backward(loss, x, x, output, numpy.zeros_like(x), numpy.zeros(2, dtype),
                                   numpy.zeros((), dtype), numpy.zeros((), dtype), {}, bias_row=numpy.zeros((1, 2), dtype))
        flat, step, lr = numpy.zeros(6, dtype), numpy.zeros(1, numpy.int64), numpy.full(1, 0.1)
        for name, rule in RULES.items():  # every rule's kernel, as the check and as the update
            state = numpy.zeros((rule.state_buffers, 6), dtype)
            for check in (True, False):
                stub.optimizer_step(Optimizer(name), flat, flat, state, step, lr, numpy.zeros(len(STATUS), dtype),
                                    check=check, clip=1.0, scratch={})
        if "finite_check" in vars(CupyBackend):  # a kernel-backed check, where the backend has one
            stub.finite_check(x, numpy.zeros(2, dtype))
    return calls


_SIGNATURE = re.compile(r'extern "C" __global__ void (\w+)\(([^)]*)\)')
_C_TYPES = {"long long": "int64", "double": "float64", "float": "float32", "int": "int32", "unsigned int": "uint32"}


def kernel_signatures(dtype):
    """{kernel name: [(C base type, is pointer)]} from kernel_source(dtype); the macro-stamped
    kernels' templates (parameter list of ``name``) are keyed by their first declared use."""
    found = {}
    for name, params in _SIGNATURE.findall(kernel_source(dtype).replace("\\\n", "\n")):
        parsed = []
        for param in params.replace("\n", " ").split(","):
            words = param.replace("*", " * ").split()[:-1]  # drop the parameter's name
            words = [w for w in words if w not in ("const", "__restrict__")]
            parsed.append((" ".join(w for w in words if w != "*"), "*" in words))
        found.setdefault(name, parsed)
    return found


def test_every_kernel_launch_passes_the_arguments_its_signature_declares():
    """Argument count, pointer or scalar, and element/scalar type of every launch, against the C
    signature: a mismatch compiles fine and only shows (as garbage) on a GPU."""
    for dtype in ("float32", "float64"):
        signatures = kernel_signatures(dtype)
        for name, call_dtype, args in kernel_calls():
            if call_dtype != dtype:
                continue
            params = signatures.get(name)
            if params is None:  # stamped by a macro (activations.cu): the template's parameter list
                raw = kernel_source(dtype).replace("\\\n", "\n")
                template = re.findall(r'extern "C" __global__ void name\(([^)]*)\)', raw)
                which = 0 if name.startswith("bias_") else 2 if name.endswith("_backward_bias") else 1
                params = [(" ".join(w for w in p.replace("*", " * ").split()[:-1] if w not in ("const", "*")),
                           "*" in p) for p in template[which].split(",")]
            assert len(args) == len(params), f"{name}: {len(args)} arguments for {len(params)} parameters"
            for index, (arg, (ctype, pointer)) in enumerate(zip(args, params)):
                expected = dtype if ctype == "real" else _C_TYPES[ctype]
                what = f"{name} argument {index} ({'pointer to ' if pointer else ''}{ctype})"
                if pointer:
                    assert isinstance(arg, numpy.ndarray), f"{what}: got {type(arg).__name__}"
                else:
                    assert isinstance(arg, numpy.generic), f"{what}: got a Python {type(arg).__name__}"
                assert arg.dtype == numpy.dtype(expected), f"{what}: got {arg.dtype}, expected {expected}"


def test_kernel_source_holds_every_kernel_the_backend_calls():
    names = called_kernel_names()
    # forward for every activation, backward for those with a derivative kernel, loss, SGD
    assert {f"bias_{a}_forward" for a in ACTIVATIONS} <= names
    assert {"sigmoid_backward", "tanh_backward", "relu_backward", "mse_loss_grad"} <= names
    assert {"gather_batch_at", "accumulate_step"} <= names  # fit's per-step work on the device
    assert {"softmax_cross_entropy_rows", "sum_row_losses", "sigmoid_binary_cross_entropy_loss_grad",
            *(rule.kernel for rule in RULES.values())} <= names
    for dtype, ctype in (("float32", "float"), ("float64", "double")):
        source = kernel_source(dtype)
        assert f"#define GB_REAL {ctype}" in source
        for name in names:
            assert re.search(rf"\b{name}\b", source), f"kernel {name} missing from kernel_source({dtype!r})"


def test_kernel_dir_holds_these_sources(monkeypatch):
    monkeypatch.delenv("GPUBACKPROP_KERNEL_DIR", raising=False)
    found = kernel_dir()
    for path in KERNEL_FILES:
        assert (found / path.name).read_text() == path.read_text(), f"{found / path.name} differs from {path}"
    monkeypatch.setenv("GPUBACKPROP_KERNEL_DIR", "/nonexistent/kernels")  # the documented override wins
    assert kernel_dir() == Path("/nonexistent/kernels")


@needs_nvcc
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_assembled_translation_unit_compiles_with_every_called_kernel(dtype, tmp_path):
    # kernel_source() is what NVRTC compiles at run time: all files in one unit, GB_REAL defined once.
    source = tmp_path / f"gpubackprop_{dtype}.cu"
    source.write_text(kernel_source(dtype))
    real = "float" if dtype == "float32" else "double"
    functions = entry_functions(compile_with_ptxas_report(source, real, tmp_path))
    compiled = {name for name, _ in functions}
    missing = called_kernel_names() - compiled
    assert not missing, f"called by CupyBackend but not compiled: {missing}"
    assert all(spills == (0, 0) for spills in functions.values()), functions
