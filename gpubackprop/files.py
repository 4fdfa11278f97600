"""The one way gpubackprop writes a file (checkpoints, the command line's predictions, plots and
JSON): checked first, then written atomically.

- ``check_target(path)`` before any work: ``path`` must not be a folder (nor end in a separator),
  its folder must exist and take a new file (tried, not guessed from permission bits: root ignores
  those, read-only file systems do not) and its name must fit the file system's limit. Raises
  ``TargetError`` (a ``ValueError``) saying what is wrong.
- ``write_atomically(path, write)``: ``write(file)`` fills a temporary file in the same folder
  (opened in binary mode), which is flushed, fsync'ed and then renamed over ``path``; a failure or
  a crash leaves what was at ``path`` as it was (or nothing), never a half-written file. A new
  file gets the permissions the umask allows (as ``open(path, "w")`` would give), an existing one
  keeps its own; the process umask is never touched (other threads may be creating files).
"""
from __future__ import annotations

import errno
import os
import secrets


class TargetError(ValueError):
    """An output path that cannot be written; the message says why."""


def check_target(path) -> None:
    """TargetError unless a file can be written at ``path`` by ``write_atomically``. Creates and
    removes one empty probe file in the folder (the only way to know for sure)."""
    text = os.fspath(path)
    if not text:
        raise TargetError("an empty path")
    if text.endswith(os.sep) or (os.altsep and text.endswith(os.altsep)) or os.path.isdir(text):
        raise TargetError(f"{text} is a directory; name a file in it" + ("" if os.path.isdir(text) else
                                                                          " (the path ends in a separator)"))
    if os.path.exists(text) and not os.path.isfile(text):
        raise TargetError(f"{text} exists and is not a regular file (a device, a pipe, a socket?)")
    folder = os.path.dirname(os.path.abspath(text))
    if not os.path.isdir(folder):
        raise TargetError(f"the directory {folder!r} does not exist")
    name = os.path.basename(text)
    try:
        longest = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # not on this platform / file system
        longest = None
    if longest is not None and longest > 0 and len(os.fsencode(name)) > longest:
        raise TargetError(f"the file name {name[:40]!r}... is {len(os.fsencode(name))} bytes long; "
                          f"the file system takes at most {longest}")
    try:
        fd, probe = _create_temporary(folder, None)
    except OSError as exc:
        raise TargetError(f"cannot write in the directory {folder!r} ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)


def write_atomically(path, write, what: str = "the file") -> None:
    """Call ``write(handle)`` on a temporary binary file beside ``path``, flush, fsync, rename it
    onto ``path`` (keeping an existing file's permission bits), then fsync the folder.

    Errors are the ``OSError`` of the failed step, naming ``path`` and the reason ("cannot save
    {what} (...)"); anything ``write`` raises passes through. Either way no temporary file is left."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = _create_temporary(folder, _mode_for(path))
    except OSError as exc:
        raise _error(exc, path, what) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise _error(exc, path, what) from exc
        raise
    _fsync_dir(folder)  # make the rename itself durable


def _mode_for(path):
    """The permission bits of the file at ``path`` if there is one (a save keeps them), else None."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        return None


def _create_temporary(folder, mode):
    """(fd, name) of a new, empty file in ``folder`` with a short random name.

    Short, so that it fits whatever the length of the target's name (up to the file system's
    limit). Created with 0o666, which the kernel narrows by the umask (tempfile.mkstemp's 0o600
    would need the umask to be read, and reading it means setting it); ``mode`` (an existing
    target's bits) is then set exactly."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        name = os.path.join(folder, f".gpubackprop-{secrets.token_hex(8)}.tmp")
        try:
            fd = os.open(name, flags, 0o666)
        except FileExistsError:
            continue
        if mode is not None:
            try:
                os.chmod(name, mode)
            except BaseException:
                os.close(fd)
                os.unlink(name)
                raise
        return fd, name
    raise FileExistsError(errno.EEXIST, "no free temporary file name", folder)


def _error(exc, path, what) -> OSError:
    """``exc`` (raised on the temporary file or the folder) as the same kind of OSError about ``path``."""
    if exc.errno is None:
        return OSError(f"cannot save {what} to {path}: {exc}")
    # OSError(errno, ...) is the matching subclass (PermissionError, FileNotFoundError, ...)
    return OSError(exc.errno, f"cannot save {what} ({exc.strerror or os.strerror(exc.errno)})", path)


def _fsync_dir(folder) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
