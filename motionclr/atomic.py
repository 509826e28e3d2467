"""Atomic file writes, and disk faults as one line (docs/reliability.md, "Disk full anywhere").

Every file the package writes (parts, shards, manifest, index, checkpoints, features) goes to
a temporary name beside its final one and is renamed when complete, so a reader never sees a
half-written file; a write that fails because of the disk (full, quota, read-only, too large)
becomes one :class:`~motionclr.errors.StorageError` line and leaves no temporary file.
"""
from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from motionclr.errors import StorageError

_ERRNO = re.compile(r"errno\s*=\s*(\d+)")
_DISK_TEXTS = ("No space left", "File too large", "Disk quota", "Read-only file system",
               "Permission denied", "Input/output error")


def disk_error_reason(e: BaseException) -> str | None:
    """Why a write failed, when it is the disk's fault (None otherwise).

    h5py reports a failed write on close as a RuntimeError (``... errno = 27, error message =
    'File too large' ...``), not an OSError, so both are read here.
    """
    if isinstance(e, StorageError):
        return None
    if isinstance(e, OSError):
        return e.strerror or str(e)
    if isinstance(e, RuntimeError):
        m = _ERRNO.search(str(e))
        if m:
            return os.strerror(int(m.group(1)))
        return next((t for t in _DISK_TEXTS if t in str(e)), None)
    return None


@contextlib.contextmanager
def storage(where: str | Path, kept: str = ""):
    """Turn a write failure inside the block into one :class:`StorageError` line."""
    try:
        yield
    except (OSError, RuntimeError) as e:
        reason = disk_error_reason(e)
        if reason is None:
            raise
        raise StorageError(f"cannot write to {where}: {reason} — {kept}fix the disk "
                           "(space, permissions) and rerun") from e


def atomic_write(path: str | Path, write, kept: str = "") -> Path:
    """``write(f)`` into a temporary file beside ``path`` (an open binary file), fsync, then
    rename over ``path``. On any failure the temporary file is removed and a disk fault
    becomes one :class:`StorageError` line, so a full disk never leaves a corrupt ``path``.
    Used for the manifest, checkpoints, features and the motion index."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with storage(path.parent, kept):
        try:
            with open(tmp, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return path


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write to a temporary name in the same directory, fsync, then rename over ``path``."""
    atomic_write(path, lambda f: f.write(text.encode()))
