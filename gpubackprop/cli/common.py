"""What the commands of ``gpubackprop`` share: the --backend option and output files checked
before any work and written atomically."""
from __future__ import annotations

import os

from .. import files
from ..backends import ENV_VAR

BACKEND_HELP = (f"numpy, cupy (the first GPU), cupy:N or auto; default: the {ENV_VAR} environment variable, "
                f"else auto (a usable GPU, else numpy)")


class UsageError(ValueError):
    """An argument that cannot work; reported in one line, exit code 2."""


def one_line(text: str) -> str:
    """``text`` on one line (an error message is one line on stderr)."""
    return " ".join(str(text).split())


def add_backend_argument(parser):
    # None, not "auto": the library then reads the environment variable (gpubackprop.get_backend).
    parser.add_argument("--backend", default=None, help=BACKEND_HELP)


def check_outputs(*targets) -> None:
    """Every output target of a command, ``(flag, path or None)`` pairs, checked completely before
    any work (``gpubackprop.files.check_target``: not a folder, the folder there and writable, the
    name not too long), and no two naming the same file; UsageError naming the flag otherwise."""
    seen = {}
    for flag, path in targets:
        if path is None:
            continue
        try:
            files.check_target(path)
        except files.TargetError as exc:
            raise UsageError(f"{flag} {path}: {exc}; nothing was done") from None
        key = os.path.realpath(path)
        if key in seen:
            raise UsageError(f"{seen[key]} and {flag} name the same file ({path}); give each its own")
        seen[key] = flag


def check_not_input(flag: str, path, inputs) -> None:
    """UsageError when the output ``path`` is one of the ``inputs`` (flag, path) it would overwrite."""
    if path is None:
        return
    for input_flag, input_path in inputs:
        if input_path is not None and os.path.exists(input_path) and os.path.exists(path) \
                and os.path.samefile(path, input_path):
            raise UsageError(f"{flag} {path} is the {input_flag} file: writing it would destroy the input; "
                             f"name another file")


def replace_atomically(path, write, what="the output") -> None:
    """``write(file)`` (a binary file) into a temporary file beside ``path``, then renamed onto it:
    ``gpubackprop.files.write_atomically``, as checkpoints are written."""
    files.write_atomically(path, write, what=what)
