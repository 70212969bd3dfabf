"""Writing and reading the files of a run: every write is atomic (a temporary file beside the
target, flushed, then renamed over it), so a kill or a full disk mid-write leaves the previous
file whole and no temporary behind; a full disk or quota, or a folder that cannot be written,
is one line naming the folder (:class:`~selfsight.errors.NoSpace`,
:class:`~selfsight.errors.NotWritable`); every read of a file that may come from elsewhere
fails with one line that names it.

Temporaries of killed writers: a writer holds an exclusive ``flock`` on its temporary from
creating it until the rename, and the kernel drops that lock when the process ends, however it
ends (kill -9, out of memory, power loss), so a temporary whose lock can be taken has no live
writer and :func:`remove_stale_temporaries` deletes it at once, whatever its age: a run started
again right after a crash gets the space back, and a run still writing is never disturbed. (An
age rule alone cannot tell a dead writer from a slow one: decoding a large folder into the cache
takes hours. Without ``fcntl``, on Windows, a temporary untouched for an hour counts as dead.)
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from selfsight.errors import MissingInput, NoSpace, NotWritable, UserError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

_NO_SPACE = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
_NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)
STALE_AFTER_S = 3600.0  # only without file locks: a temporary untouched this long is a dead one


def size_text(n: float) -> str:
    """Bytes as people read them (decimal units, as ``df -H``): 950 B, 12.3 MB, 1.5 GB."""
    units = ("B", "kB", "MB", "GB", "TB", "PB")
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n, i = n / 1000, i + 1
    return f"{n:.0f} {units[i]}" if i == 0 else f"{n:.1f} {units[i]}"


def free_bytes(folder: str | Path) -> int | None:
    """Bytes a user (not root) can still write on the disk of ``folder`` or, when it does not
    exist yet, of its nearest existing parent; None when that cannot be known."""
    place = Path(folder).absolute()
    while not place.exists() and place != place.parent:
        place = place.parent
    try:
        return shutil.disk_usage(place).free
    except OSError:
        return None


def _with_errno(error: OSError, code: int) -> OSError:
    error.errno = code  # for Python callers; str(error) stays the one-line message
    return error


def check_free_space(folder: str | Path, needed_bytes: int, what: str) -> None:
    """Refuse a large write before it starts: a one-line :class:`NoSpace` naming ``folder``
    when its disk has fewer than ``needed_bytes`` free. ``what`` says what was to be written."""
    free = free_bytes(folder)
    if free is not None and free < needed_bytes:
        raise _with_errno(NoSpace(
            f"{folder}: not enough free space for {what}: needs {size_text(needed_bytes)}, "
            f"{size_text(free)} free; free some space or write elsewhere"), errno.ENOSPC)


def _concerns(filename: Any, path: Path) -> bool:
    """Whether an OSError's ``filename`` is ``path``, a file beside it or a folder above it."""
    try:
        named = Path(os.fsdecode(filename))
    except TypeError:  # a descriptor number
        return True
    return named.parent == path.parent or named in path.parents


def disk_error(error: BaseException, path: str | Path,
               needed_bytes: int | None = None) -> UserError | None:
    """The one-line error for ``error`` when it says that ``path`` could not be written for
    want of space or quota (:class:`NoSpace`, with the bytes ``needed_bytes`` when known and
    those free) or because its folder is read-only (:class:`NotWritable`); None for any other
    error, which then keeps its traceback (a bug, or another file's problem)."""
    if isinstance(error, UserError) or not isinstance(error, OSError):
        return None
    code, path = error.errno, Path(path)
    if code not in _NO_SPACE + _NOT_WRITABLE or (
            error.filename is not None and not _concerns(error.filename, path)):
        return None
    folder, reason = path.parent, os.strerror(code)
    if code in _NOT_WRITABLE:
        return _with_errno(NotWritable(
            f"{folder}: {reason}, cannot write {path.name}; make the folder writable or "
            "write elsewhere"), code)
    if code != errno.ENOSPC:  # over quota: the disk's free space is not what is missing
        return _with_errno(NoSpace(
            f"{folder}: {reason} writing {path.name}; free some of your space or write "
            "elsewhere"), code)
    free = free_bytes(folder)
    room = ", ".join(part for part in (
        f"needs {size_text(needed_bytes)}" if needed_bytes else "",
        f"{size_text(free)} free" if free is not None else "") if part)
    return _with_errno(NoSpace(
        f"{folder}: {reason} writing {path.name}{f' ({room})' if room else ''}; free some "
        "space or write elsewhere"), code)


class _Recording:
    """The temporary file as a ``write`` callable sees it: it keeps the first OSError a write
    raises, because some writers report another error instead (``torch.save`` raises
    ``RuntimeError: [enforce fail ...] unexpected pos`` when the disk fills), and the caller
    must still be told that the disk is full."""

    def __init__(self, file: IO[bytes]) -> None:
        self._file, self.error = file, None

    def write(self, data: Any) -> int:
        try:
            return self._file.write(data)
        except OSError as error:
            self.error = self.error or error
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


def _names(path: Path, fd: int) -> bool:
    """Whether ``path`` is still the file open as ``fd``."""
    try:
        a, b = os.stat(path), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _create_locked(tmp: Path) -> int:
    """A descriptor of ``tmp`` (created if absent), exclusively locked, then emptied.

    Another live writer of the same temporary is waited for (not truncated under it: the
    emptying comes after the lock); if a sweep deleted the file between our open and our lock,
    the path no longer names what we locked, and we start again."""
    while True:
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o666)
        try:
            if fcntl is not None:
                with contextlib.suppress(OSError):  # ENOLCK (no locks on this file system)
                    fcntl.flock(fd, fcntl.LOCK_EX)
            if _names(tmp, fd):
                os.ftruncate(fd, 0)
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


@contextlib.contextmanager
def locked_temporary(tmp: str | Path) -> Iterator[IO[bytes]]:
    """``tmp`` created (or emptied) and open for writing, locked against sweeps until the block
    ends; the block renames it into place. If it has not (an exception, or a block that chose
    not to), it is deleted, while still locked, so no other writer can have taken it over."""
    tmp = Path(tmp)
    f = os.fdopen(_create_locked(tmp), "wb")
    try:
        yield f
    finally:
        with contextlib.suppress(OSError):
            if _names(tmp, f.fileno()):
                tmp.unlink()
        with contextlib.suppress(OSError):  # after a failure, flushing the rest fails again
            f.close()


def temporary_path(path: str | Path) -> Path:
    """Where :func:`write_atomic` writes ``path`` before renaming it: ``.<name>.tmp`` beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp")


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], None],
                 size: int | None = None) -> Path:
    """Call ``write`` on a temporary file beside ``path``, fsync it, then rename it over
    ``path`` (the rename is atomic on one file system).

    On any failure the temporary is removed and the previous ``path`` is left whole. A full
    disk or quota, or a folder that cannot be written, raises a one-line :class:`NoSpace` or
    :class:`NotWritable` naming the folder (``size``, the bytes to write when known, is quoted
    in it), also when ``write`` itself reported the failed write as another error."""
    path = Path(path)
    tmp = temporary_path(path)
    sink: _Recording | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with locked_temporary(tmp) as f:
            sink = _Recording(f)
            write(sink)  # type: ignore[arg-type]
            f.flush()
            os.fsync(f.fileno())
            os.replace(tmp, path)
    except Exception as error:
        translated = disk_error(sink.error if sink is not None and sink.error else error,
                                path, size)
        if translated is None:
            raise
        raise translated from error
    return path


def make_folder(folder: str | Path) -> Path:
    """``folder`` created with its parents if absent; a read-only parent or a full disk is a
    one-line error naming it, as for :func:`write_atomic`."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        translated = disk_error(error, folder)
        if translated is None:
            raise
        raise translated from error
    return folder


def append_line(path: str | Path, line: str) -> None:
    """Append ``line`` and a newline to ``path`` (a log, such as metrics.jsonl) whole or not at
    all: a failed write is cut back off, so readers never meet half a line; a full disk or a
    read-only folder is the same one-line error as for :func:`write_atomic`."""
    path, data = Path(path), (line + "\n").encode()
    try:
        with open(path, "ab", buffering=0) as f:
            start = f.seek(0, os.SEEK_END)
            try:
                done = 0
                while done < len(data):
                    done += f.write(data[done:]) or 0
            except BaseException:
                with contextlib.suppress(OSError):
                    os.ftruncate(f.fileno(), start)
                raise
    except OSError as error:
        translated = disk_error(error, path)
        if translated is None:
            raise
        raise translated from error


def reserve_space(file: IO[bytes] | int, size: int) -> None:
    """Allocate the first ``size`` bytes of ``file`` on the disk now (``posix_fallocate``), so
    that a full disk fails here, as OSError ENOSPC, and never later.

    Needed before writing through a memory map: numpy creates the file of a memmap sparse (a
    hole the length of the array), each page stored into the map needs a block then, and on a
    full disk the kernel's only way to refuse a block to a store is SIGBUS, which kills the
    process without a word (exit 135). File systems that cannot preallocate are left as they
    are (macOS has no posix_fallocate; glibc emulates it elsewhere): there
    :func:`check_free_space`, done first, is the guard."""
    fallocate = getattr(os, "posix_fallocate", None)
    if fallocate is None or size <= 0:
        return
    try:
        fallocate(file if isinstance(file, int) else file.fileno(), 0, size)
    except OSError as error:
        if error.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise


def remove_stale_temporaries(folder: str | Path, pattern: str = ".*.tmp") -> list[Path]:
    """Delete the temporaries (``pattern``) in ``folder`` whose writer is dead (see the module
    notes: their lock is free); return those deleted. A run calls it where it writes large
    files (the checkpoints, the decode cache) before it starts writing."""
    try:
        candidates = sorted(Path(folder).glob(pattern))
    except OSError:
        return []
    return [tmp for tmp in candidates if _remove_if_abandoned(tmp)]


def _remove_if_abandoned(tmp: Path) -> bool:
    if fcntl is None:
        try:
            if time.time() - tmp.stat().st_mtime < STALE_AFTER_S:
                return False
            tmp.unlink()
            return True
        except OSError:
            return False
    try:
        fd = os.open(tmp, os.O_RDWR)  # a folder, someone else's file: not ours to sweep
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # fails while its writer lives
        if not _names(tmp, fd):  # renamed into place meanwhile: not a temporary any more
            return False
        tmp.unlink()
        return True
    except OSError:  # held (BlockingIOError), or no locks here (ENOLCK): leave it
        return False
    finally:
        os.close(fd)


def write_text(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda f: f.write(text.encode()))


def write_json(path: str | Path, value: Any) -> Path:
    return write_text(path, json.dumps(value, indent=2))


def read_json(path: str | Path, what: str = "a selfsight file") -> Any:
    """The parsed JSON of ``path``; a missing or malformed file is a one-line user error."""
    path = Path(path)
    if not path.is_file():
        raise MissingInput(f"{path} not found: is it {what}?")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: not valid JSON ({error})") from None
