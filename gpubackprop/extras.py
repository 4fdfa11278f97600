"""How to install what an optional feature needs, as a command that works from where the user is.

gpubackprop is not on PyPI, so a hint naming the package with an extra (gpubackprop + [plot]) would
fail, or install whatever took that name later. The hints name the packages themselves, as pyproject.toml's extras pin them
(tests/test_cli_files.py checks that this table and pyproject.toml agree), and, for a source
checkout, the extra: ``pip install '.[plot]'``.
"""
from __future__ import annotations

# extra -> its requirements, as in pyproject.toml's [project.optional-dependencies]
REQUIREMENTS = {
    "cuda12": ("cupy-cuda12x>=14",),  # >= 14: cuda.pathfinder, which recording (CUDA graphs) needs
    "cuda13": ("cupy-cuda13x>=14",),
    "plot": ("matplotlib>=3.5",),
    "distributed": ("mpi4py>=4", "mpich>=4"),
    "sklearn": ("scikit-learn>=1.6",),
    "onnx": ("onnx>=1.14",),
}


def pip_command(extra: str) -> str:
    """``pip install 'req' ...`` for the requirements of ``extra`` (e.g. ``pip install 'matplotlib>=3.5'``)."""
    return "pip install " + " ".join(f"'{requirement}'" for requirement in REQUIREMENTS[extra])


def install_hint(extra: str) -> str:
    """The command that installs what ``extra`` brings, and the source checkout's equivalent."""
    return f"{pip_command(extra)} (in a gpubackprop source checkout: pip install '.[{extra}]')"


def cuda_hint() -> str:
    """Which CuPy wheel to install, by the CUDA driver's major version."""
    return (f"{pip_command('cuda12')} for a CUDA 12 driver, or {pip_command('cuda13')} for a CUDA 13 driver "
            f"(in a gpubackprop source checkout: pip install '.[cuda12]' or '.[cuda13]')")
