"""The CUDA sources of the CUDA backend: where they are, and how they become one translation unit."""
from __future__ import annotations

import os
from pathlib import Path

import numpy

from ..layouts import cuda_defines

# The kernels: these, then every rule's kernels/optim_<name>.cu (gpubackprop.optimizers.RULES).
_KERNEL_FILES = ("activations.cu", "loss.cu", "checks.cu", "fit.cu")
_HEADERS = ("activation_math.cuh", "last_block.cuh", "totals.cuh", "optim_common.cuh")  # each inlined once, in place of its #include
# --fmad=false: each multiply and add rounds on its own, as NumPy's ufuncs do, so the kernels
# reproduce the NumPy backend's arithmetic instead of drifting by fused-multiply-add roundings.
_NVRTC_OPTIONS = ("--std=c++14", "--fmad=false")

def kernel_dir() -> Path:
    """Where the .cu sources are: inside the installed package, else the source tree's kernels/."""
    override = os.environ.get("GPUBACKPROP_KERNEL_DIR")
    if override:
        return Path(override)
    here = Path(__file__).resolve().parent.parent  # gpubackprop/
    for candidate in (here / "kernels", here.parent / "kernels"):
        if (candidate / _KERNEL_FILES[0]).is_file():
            return candidate
    raise FileNotFoundError(
        f"gpubackprop's CUDA sources ({', '.join(_KERNEL_FILES)}) are neither in {here / 'kernels'} "
        f"nor in {here.parent / 'kernels'}; reinstall the package or set GPUBACKPROP_KERNEL_DIR"
    )


def kernel_files() -> tuple:
    """The .cu files of the kernels, in the order they are compiled."""
    from ..optimizers import RULES  # (the optimizers import no backend)
    return _KERNEL_FILES + tuple(f"optim_{name}.cu" for name in RULES)


def kernel_source(dtype) -> str:
    """All kernel sources as one translation unit, with GB_REAL set to the C type of dtype and the
    slot layouts (gpubackprop.layouts) as #defines; the shared headers (activation_math.cuh,
    last_block.cuh, totals.cuh, optim_common.cuh) are inlined once each, in place of the first #include of them
    (later ones removed; a header's own #include of another is inlined the same way first)."""
    ctype = {"float32": "float", "float64": "double"}[numpy.dtype(dtype).name]
    parts = [f"#define GB_REAL {ctype}\n" + cuda_defines()]
    inlined = set()

    def expand(text):
        for header in _HEADERS:
            include = f'#include "{header}"'
            if include in text:
                if header not in inlined:
                    inlined.add(header)
                    parts.append(f'#line 1 "{header}"\n' + expand((kernel_dir() / header).read_text()))
                text = text.replace(include, "")
        return text

    for name in kernel_files():
        text = expand((kernel_dir() / name).read_text())
        parts.append(f'#line 1 "{name}"\n' + text)
    return "\n".join(parts)
