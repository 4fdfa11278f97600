"""A CUDA emulator for the tests: the kernels of ``kernels/*.cu`` compiled by the host C++ compiler
and run on the CPU, launched as CuPy's ``RawKernel`` is (``kernel((grid,), (block,), args)``).

Why here (tests/, not the package): it is a test instrument; users never run it, and the wheel does
not need a C++ compiler. No registry package runs CUDA C on a CPU (PoCL runs OpenCL C, numba's
simulator Python kernels), so it is ours: runtime.h (fibers, barriers, shared memory, built-ins) and
this module (compiling, caching, argument checks, launch orders).

What it models, and how (see runtime.h):
- the very translation unit CuPy compiles (``kernel_source(dtype)``), NVRTC's options mapped onto g++:
  ``--fmad=false`` -> ``-ffp-contract=off`` (each product and sum rounds on its own), ``--std=c++14``
  -> ``-std=c++14``, ``-ftz=true`` -> float arithmetic flushing subnormals (x86 MXCSR FTZ|DAZ); any
  other option is refused;
- each CUDA thread a fiber of its block; ``__syncthreads()`` a barrier that reports divergence
  (threads waiting while others returned, or waiting at different barriers);
- ``__shared__`` per block (refilled with 0xff bytes, NaN for floats, before every block);
- the threads of a block run in index order, reversed, or shuffled (reshuffled at every barrier):
  ``ORDER`` picks one, or "rotate" (the default) takes the next at every launch; ``race_check``
  runs every launch in all three orders and fails when the results differ (a race);
- math from the C library (tanhf for float, as CUDA's overloads): results may differ from libdevice
  and from NumPy's own SIMD loops in the last bits of transcendental functions, never elsewhere;
- each argument checked against the compiled signature (count, pointer or scalar, kind and width);
- AddressSanitizer with ``GPUBACKPROP_EMULATOR_ASAN=1`` (the process must have libasan preloaded:
  ``LD_PRELOAD=$(g++ -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0``);
- warp shuffles, votes and atomics (but atomicAdd on unsigned int and __threadfence, which one fiber at
  a time makes trivial) stop the compile with a message (runtime.h): never run wrong.

Compiled modules are shared objects cached by the hash of (runtime, source, flags, compiler) in
``$GPUBACKPROP_EMULATOR_CACHE`` or a per-user directory under the system's temp dir.
"""
from __future__ import annotations

import ctypes
import hashlib
import itertools
import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy

HERE = Path(__file__).resolve().parent
RUNTIME = HERE / "runtime.h"
ORDERS = ("index", "reversed", "shuffled")


class EmulatorError(RuntimeError):
    """A kernel did something the emulator caught: a divergent barrier, a bad argument, a race."""


class Settings:
    """How launches run: ``order`` one of ORDERS or "rotate"; ``race_check``: every order, compared."""

    def __init__(self):
        self.order = os.environ.get("GPUBACKPROP_EMULATOR_ORDER", "rotate")
        self.race_check = False
        self.launches = 0  # every launch so far (the rotation's and the shuffle's counter)


SETTINGS = Settings()
_launch_lock = threading.Lock()  # the runtime's state is per process: one launch at a time


def compiler() -> str | None:
    """The host C++ compiler: $CXX, else g++, else c++; None when there is none."""
    for candidate in (os.environ.get("CXX"), "g++", "c++"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


def skip_reason() -> str | None:
    """None when kernels can be emulated here, else why not (for pytest.skip)."""
    if compiler() is None:
        return "no C++ compiler (g++ or $CXX) to build the CUDA emulator's kernels with"
    if not hasattr(ctypes.CDLL(None), "swapcontext"):
        return "no ucontext (swapcontext) in this C library: the CUDA emulator needs it for its fibers"
    return None


def asan_requested() -> bool:
    return os.environ.get("GPUBACKPROP_EMULATOR_ASAN", "") not in ("", "0")


def _cache_dir() -> Path:
    path = os.environ.get("GPUBACKPROP_EMULATOR_CACHE")
    path = Path(path) if path else Path(tempfile.gettempdir()) / f"gpubackprop-cuda-emulator-{os.getuid()}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def translate_options(options) -> tuple[list[str], bool]:
    """(g++ flags, ftz) for NVRTC ``options``; ValueError for an option the emulator cannot honour."""
    flags, ftz, fmad = ["-std=c++14"], False, True  # NVRTC's defaults: C++17 nowadays, fmad and no ftz
    for option in options:
        if option in ("--std=c++14", "-std=c++14", "--std=c++17", "-std=c++17"):
            flags[0] = "-std=" + option.split("=")[1]
        elif option in ("--fmad=false", "-fmad=false"):
            fmad = False
        elif option in ("--fmad=true", "-fmad=true"):
            fmad = True
        elif option in ("-ftz=true", "--ftz=true"):
            ftz = True  # the last one wins, as in NVRTC
        elif option in ("-ftz=false", "--ftz=false"):
            ftz = False
        elif option.startswith("-D"):
            flags.append(option)
        else:
            raise ValueError(f"NVRTC option {option!r} has no meaning in the CUDA emulator; "
                             f"known: --std=, --fmad=, -ftz=, -D")
    if fmad:  # a fused multiply-add rounds once: g++ may contract only where the CPU has FMA
        raise ValueError("the CUDA emulator reproduces --fmad=false only (pass it): a GPU's fused "
                         "multiply-adds cannot be matched on the CPU")
    flags.append("-ffp-contract=off")
    return flags, ftz


_NAME = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(')


class Module:
    """One translation unit compiled for the CPU, like ``cupy.RawModule(code=, options=)``."""

    def __init__(self, code: str, options=()):
        reason = skip_reason()
        if reason:
            raise EmulatorError(reason)
        self.flags, self.ftz = translate_options(options)
        self.asan = asan_requested()
        cxx = compiler()
        preprocessed = subprocess.run([cxx, "-E", "-P", "-x", "c++", *self.flags, "-"], input=code,
                                      capture_output=True, text=True, check=False)
        if preprocessed.returncode:
            raise EmulatorError(f"preprocessing the kernels failed:\n{preprocessed.stderr}")
        self.names = tuple(dict.fromkeys(_NAME.findall(preprocessed.stdout)))
        if not self.names:
            raise EmulatorError('no extern "C" __global__ kernel in the source')
        unit = (f'#include "{RUNTIME}"\n#line 1 "kernel_source"\n{code}\n'
                + "".join(f"GBEMU_EXPORT({name})\n" for name in self.names))
        build = ["-O2", "-fPIC", "-shared", "-fno-fast-math", "-w", *self.flags]
        if self.asan:
            build += ["-fsanitize=address", "-fno-omit-frame-pointer", "-g", "-O1"]
        version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
        key = hashlib.sha256("\0".join([RUNTIME.read_text(), unit, " ".join(build), version]).encode()).hexdigest()[:24]
        target = _cache_dir() / f"kernels-{key}.so"
        if not target.exists():
            with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
                source, built = Path(tmp) / "unit.cpp", Path(tmp) / "unit.so"
                source.write_text(unit)
                done = subprocess.run([cxx, *build, str(source), "-o", str(built)], capture_output=True, text=True)
                if done.returncode:
                    raise EmulatorError(f"compiling the kernels for the CPU failed:\n{done.stderr[-6000:]}")
                os.replace(built, target)  # atomic: a concurrent run sees the whole file or none
        if self.asan and "asan" not in open("/proc/self/maps").read():
            raise EmulatorError("GPUBACKPROP_EMULATOR_ASAN=1 needs libasan loaded first: run python under "
                                "LD_PRELOAD=$(g++ -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0")
        self.path = target
        self._lib = ctypes.CDLL(str(target))
        self._kernels = {}

    def get_function(self, name: str) -> "Kernel":
        kernel = self._kernels.get(name)
        if kernel is None:
            if name not in self.names:
                raise EmulatorError(f"no kernel named {name!r} in the module (it has {', '.join(self.names)})")
            kernel = self._kernels[name] = Kernel(self, name)
        return kernel


_PYTHON_SCALARS = {bool: numpy.dtype(numpy.bool_), int: numpy.dtype(numpy.int64), float: numpy.dtype(numpy.float64)}


class Kernel:
    """One kernel: ``kernel(grid, block, args)`` as CuPy's RawKernel, every argument checked."""

    def __init__(self, module: Module, name: str):
        self.module, self.name = module, name
        describe = getattr(module._lib, f"gbemu_signature_{name}")
        describe.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        text = ctypes.create_string_buffer(1024)
        describe(text, len(text))
        # [(is pointer, numpy kind, bytes)]
        self.signature = [(p[0] == "*", p.lstrip("*")[0], int(p.lstrip("*")[1:])) for p in text.value.decode().split()]
        self._launch = getattr(module._lib, f"gbemu_launch_{name}")
        self._launch.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_uint, ctypes.c_uint, ctypes.c_int,
                                 ctypes.c_uint, ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
        self._launch.restype = ctypes.c_int

    def _parameter(self, index):
        pointer, kind, size = self.signature[index]
        ctype = {"f": {4: "float", 8: "double"}, "i": {4: "int", 8: "long long", 1: "signed char", 2: "short"},
                 "u": {4: "unsigned int", 8: "unsigned long long", 1: "unsigned char"}, "b": {1: "bool"}}
        return f"parameter {index} ({ctype.get(kind, {}).get(size, f'{kind}{size}')}{' *' if pointer else ''})"

    def _marshal(self, args):
        if not isinstance(args, tuple):
            raise TypeError(f"{self.name}: args must be a tuple (as for cupy.RawKernel), got {type(args).__name__}")
        if len(args) != len(self.signature):
            raise EmulatorError(f"{self.name}: {len(args)} arguments for {len(self.signature)} parameters")
        keep, addresses, arrays = [], [], []
        for index, (arg, (pointer, kind, size)) in enumerate(zip(args, self.signature)):
            what = f"{self.name} {self._parameter(index)}"
            if pointer:
                if not isinstance(arg, numpy.ndarray):
                    raise EmulatorError(f"{what}: expected a device array, got {type(arg).__name__}")
                if not arg.flags.c_contiguous:
                    raise EmulatorError(f"{what}: the array is not C-contiguous (a kernel reads it flat)")
                if (arg.dtype.kind, arg.dtype.itemsize) != (kind, size):
                    raise EmulatorError(f"{what}: got an array of {arg.dtype}")
                holder = ctypes.c_void_p(arg.ctypes.data)
                arrays.append(arg)
            else:
                dtype = _PYTHON_SCALARS.get(type(arg))
                if dtype is None:
                    if not isinstance(arg, numpy.generic):
                        raise EmulatorError(f"{what}: expected a scalar, got {type(arg).__name__}")
                    dtype = arg.dtype
                if (dtype.kind, dtype.itemsize) != (kind, size):
                    raise EmulatorError(f"{what}: got a {dtype} scalar ({dtype.itemsize} bytes): the kernel would "
                                        f"read garbage")
                holder = numpy.array([arg], dtype)
            keep.append(holder)
            addresses.append(ctypes.addressof(holder) if pointer else holder.ctypes.data)
        return (ctypes.c_void_p * len(addresses))(*addresses), keep, arrays

    def _run(self, packed, grid, block, order, seed):
        error = ctypes.create_string_buffer(1024)
        with _launch_lock:
            status = self._launch(packed, grid, block, order, seed, int(self.module.ftz), error, len(error))
        if status:
            raise EmulatorError(f"{self.name}<<<{grid}, {block}>>> ({ORDERS[order]} order): {error.value.decode()}")

    def __call__(self, grid, block, args, *, shared_mem=0):
        grid, block = _one_dimension(grid, "grid"), _one_dimension(block, "block")
        if shared_mem:
            raise EmulatorError(f"{self.name}: dynamic shared memory is not modelled by the emulator")
        packed, keep, arrays = self._marshal(args)
        SETTINGS.launches += 1
        seed = SETTINGS.launches
        if not SETTINGS.race_check:
            order = SETTINGS.order
            index = SETTINGS.launches % 3 if order == "rotate" else ORDERS.index(order)
            self._run(packed, grid, block, index, seed)
            return
        # Every order from the same inputs: results that differ are a race between threads.
        unique = list({id(a): a for a in arrays}.values())
        before = [a.copy() for a in unique]
        results = []
        for index in range(len(ORDERS)):
            for array, saved in zip(unique, before):
                numpy.copyto(array, saved)
            self._run(packed, grid, block, index, seed)
            results.append([a.copy() for a in unique])
        for index in (1, 2):
            for k, (first, other) in enumerate(zip(results[0], results[index])):
                nan_ok = first.dtype.kind == "f"
                if not numpy.array_equal(first, other, equal_nan=nan_ok):
                    raise EmulatorError(f"{self.name}<<<{grid}, {block}>>>: a race: the array of argument "
                                        f"{[i for i, a in enumerate(args) if a is unique[k]]} differs between "
                                        f"the index and the {ORDERS[index]} order of threads")


def _one_dimension(value, what):
    if isinstance(value, int):
        value = (value,)
    value = tuple(int(v) for v in value)
    if not value or any(v != 1 for v in value[1:]):
        raise EmulatorError(f"only one-dimensional launches are modelled: {what} {value}")
    return value[0]
