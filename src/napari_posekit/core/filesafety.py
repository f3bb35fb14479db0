"""Files replaced whole or not at all: temporary file, fsync, :func:`os.replace`.

:func:`write_atomically` writes a set of files. Each is written complete under
a hidden temporary name in its own folder (``.<name>.<random>.tmp``), flushed
and fsynced. Only when every file of the set is complete are they moved over
their targets, in the given order, each with one :func:`os.replace`, and each
folder is fsynced so that the renames survive a crash. A failure while writing
leaves every target as it was; the temporary files are always removed. A
replaced file keeps the permission bits of the file it replaces; a new one
gets the usual ones (``0o666`` less the umask).

A failure raises OSError (of the original errno's subclass, e.g.
PermissionError) naming the file and its folder, or the exception that the
caller's ``error`` builds from that message (the project files raise
:class:`~napari_posekit.core.project.ProjectError`).

Everything here is napari-free.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_text", "error_reason", "write_atomically"]


def error_reason(err: BaseException) -> str:
    """The reason of an error in a few words (``strerror`` for an OSError)."""
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err) or type(err).__name__


ErrorFactory = Callable[[str], Exception]


def _os_error(code: int | None, message: str) -> OSError:
    """An OSError of the subclass that ``code`` stands for (PermissionError, FileNotFoundError, ...)."""
    return OSError(code, message) if code else OSError(message)


def _fsync_path(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable; not every platform can open a folder, which is fine."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temp_path(target: Path) -> Path:
    """Create an empty, uniquely named temporary file beside ``target`` (hidden, ending in ``.tmp``)."""
    tmp = target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
    os.close(fd)
    if target.exists():
        try:
            shutil.copymode(target, tmp)
        except OSError:
            pass
    return tmp


def _cannot_write(target: Path, err: BaseException) -> OSError:
    code = getattr(err, "errno", None)
    return _os_error(code, f"cannot write {target.name} in the folder {target.parent}: {error_reason(err)}")


def write_atomically(writers: Mapping[Path, Callable[[Path], None]], *, error: ErrorFactory | None = None) -> None:
    """Write several files so that each is replaced whole or not at all.

    ``writers`` maps each target to a function that writes the complete file
    to the temporary path it is given. A failure raises OSError naming the
    file and its folder, or ``error(message)`` when given; other exceptions of
    a writer (e.g. PyTables' HDF5ExtError on a full disk) are reported the
    same way, while KeyboardInterrupt and SystemExit pass through. Should a
    rename fail after an earlier one succeeded, the earlier target already is
    the new, complete file.
    """
    try:
        _write_all(writers)
    except OSError as err:
        if error is None:
            raise
        raise error(error_reason(err)) from err


def _write_all(writers: Mapping[Path, Callable[[Path], None]]) -> None:
    temps: dict[Path, Path] = {}
    try:
        for target, write in writers.items():
            target = Path(target)
            folder = target.parent
            if not folder.is_dir():
                reason = "the parent is not a folder" if folder.exists() else "the folder does not exist"
                code = errno.ENOTDIR if folder.exists() else errno.ENOENT
                raise _os_error(code, f"cannot write {target.name} in the folder {folder}: {reason}")
            try:
                temps[target] = tmp = _temp_path(target)
                write(tmp)
                _fsync_path(tmp)
            except Exception as err:
                raise _cannot_write(target, err) from err
        for target, tmp in temps.items():
            try:
                os.replace(tmp, target)
            except OSError as err:
                raise _os_error(err.errno, f"{target}: cannot replace the file: {error_reason(err)}") from err
            _fsync_dir(target.parent)
    finally:
        for tmp in temps.values():
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, error: ErrorFactory | None = None) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`write_atomically`); returns the path."""
    path = Path(path)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()

    write_atomically({path: write}, error=error)
    return path


def atomic_write_text(
    path: str | os.PathLike, text: str, encoding: str = "utf-8", *, error: ErrorFactory | None = None
) -> Path:
    """Write ``text`` to ``path`` atomically; newlines are written as given."""
    return atomic_write_bytes(path, text.encode(encoding), error=error)
