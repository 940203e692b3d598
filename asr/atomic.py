"""Atomic file writes: readers see the old file or the new one, never half of one.

`atomic_write(path, write)` calls `write(f)` on a write-only binary file (`write`, `flush`, `fileno`) opened
under a unique temporary name in the same folder (`.<name>.<random>.tmp`), flushes it to disk (fsync), and
renames it over `path` (`os.replace`, atomic on POSIX and Windows). On any failure the temporary file is
removed and `path` is left as it was. A disk that fills up, a file-size limit or a read-only folder is reported
as one `WriteError` naming `path`; it is both an `ASRError` (scripts print it as one line) and an `OSError`
(callers that fall back to another place on an OS error still can). A unique temporary name per call lets
several processes (DDP ranks) write one file concurrently: each rename wins in turn.
"""

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from asr.errors import ASRError

# errno -> what the user can do about it
_ADVICE = {
    errno.ENOSPC: "the disk is full: free some space (or write elsewhere) and run again",
    errno.EDQUOT: "the disk quota is used up: free some space (or write elsewhere) and run again",
    errno.EFBIG: "the file is larger than this process may write (ulimit -f): raise the limit or write elsewhere",
    errno.EROFS: "the file system is read-only: write elsewhere",
    errno.EACCES: "permission denied: write elsewhere or fix the folder's permissions",
    errno.EPERM: "permission denied: write elsewhere or fix the folder's permissions",
    errno.ENAMETOOLONG: "the file name is too long for this file system: use a shorter name",
}


class WriteError(ASRError, OSError):
    """A file could not be written; the message names it and says what to do. `errno` is the OS error's."""


def write_error(path: str | Path, e: OSError) -> WriteError:
    """A one-line WriteError for `path` from the OSError that stopped writing it."""
    advice = _ADVICE.get(e.errno, "check the folder and run again")
    error = WriteError(f"{path}: cannot write ({e.strerror or e}) — {advice}")
    error.errno = e.errno
    return error


def atomic_write(path: str | Path, write: Callable[["_Sink"], object], mode: int = 0o644) -> Path:
    """Write `path` atomically with `write(binary_file)`; creates the parent folder. Raises WriteError (naming
    `path`) when the OS refuses; any other exception from `write` propagates. The temporary file never stays."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise write_error(path, e) from e
    sink = _Sink(fd)
    try:
        try:
            os.fchmod(fd, mode)  # mkstemp makes it private (0600)
            write(sink)
            os.fsync(fd)  # the data is on disk before the rename makes it visible
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if sink.error is not None:  # the OS refused a write; `write` (torch.save) may have reported it otherwise
            raise write_error(path, sink.error) from e
        if isinstance(e, OSError) and not isinstance(e, WriteError):
            raise write_error(path, e) from e
        raise
    _sync_folder(path.parent)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """`atomic_write` of a bytes value."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """`atomic_write` of a str, as UTF-8."""
    return atomic_write_bytes(path, text.encode("utf-8"))


class _Sink:
    """A write-only binary file that writes every byte or raises. The OS may accept part of a write when the disk
    fills or a size limit is reached; a buffered file or torch.save would then fail later with a vaguer error
    ("unexpected pos"), so the rest is written again and the OS's own error (ENOSPC, EFBIG) surfaces."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self.error: OSError | None = None  # the first write the OS refused

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        done = 0
        try:
            while done < len(view):
                done += os.write(self._fd, view[done:])
        except OSError as e:
            self.error = self.error or e
            raise
        return done

    def flush(self) -> None:
        pass

    def fileno(self) -> int:
        return self._fd


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every OS lets a folder be opened)."""
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
