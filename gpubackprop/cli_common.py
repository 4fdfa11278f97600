"""What the commands of ``gpubackprop`` share: the --backend option and output files checked
before any work and written atomically."""
from __future__ import annotations

import os
import secrets
from pathlib import Path

from .backends import ENV_VAR

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


def check_writable(flag: str, path) -> None:
    """UsageError unless a file can be created in the folder of ``path`` (tried, not guessed from
    permission bits: root ignores those, read-only file systems do not), before any work is done."""
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise UsageError(f"{flag} {path}: the directory {str(folder)!r} does not exist")
    probe = folder / f".gpubackprop-{secrets.token_hex(8)}.probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise UsageError(f"{flag} {path}: cannot write in the directory {str(folder)!r} "
                         f"({exc.strerror or exc}); nothing was done") from None
    os.close(fd)
    os.unlink(probe)


def replace_atomically(path, write) -> None:
    """``write(file)`` into a temporary file beside ``path``, then rename it onto ``path``: a
    failure leaves whatever was at ``path`` as it was."""
    folder = Path(path).resolve().parent
    temporary = folder / f".gpubackprop-{secrets.token_hex(8)}.tmp"
    try:
        with open(temporary, "xb") as handle:
            write(handle)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
