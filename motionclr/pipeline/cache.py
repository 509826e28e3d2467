"""Content-addressed stage directories: the name is a hash of everything that determines
the output, so the same config is a cache hit and a changed one gets a new directory."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from pathlib import Path

from motionclr.errors import StorageError

FORMAT_VERSION = 2  # bump when the shard layout or quantisation changes


def stable_hash(obj, n: int = 12) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:n]


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    """blake2b of a file's bytes (the source video's content identity)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


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
def storage(where: str | Path, kept: str = "finished videos are kept; "):
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


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` (on this host) is running. A zombie (exited, not yet reaped
    by its parent; ``kill(pid, 0)`` still succeeds on it) counts as dead: in a container whose
    PID 1 never reaps, its locks would otherwise stay held for the whole lease."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        # No /proc entry although kill() found it: gone meanwhile, or no procfs (macOS).
        return Path("/proc/self").exists() is False
    except OSError:
        return True
    # Field 3, after the parenthesised command name (which may itself hold spaces or ')').
    state = stat[stat.rindex(")") + 1:].split()[0]
    return state not in ("Z", "X", "x")


def remove_stale_tmp(directory: Path) -> list[Path]:
    """Delete ``*.<pid>.tmp`` files left by dead processes (an interrupted run)."""
    removed = []
    for p in directory.glob("*.tmp"):
        parts = p.name.split(".")
        pid = int(parts[-2]) if len(parts) >= 3 and parts[-2].isdigit() else None
        if pid is None or not pid_alive(pid):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed
