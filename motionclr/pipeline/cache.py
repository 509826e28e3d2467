"""Content-addressed stage directories: the name is a hash of everything that determines
the output, so the same config is a cache hit and a changed one gets a new directory."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

# Atomic writes live at the bottom of the package (train/eval use them too); re-exported.
from motionclr.atomic import atomic_write, atomic_write_text, disk_error_reason, storage  # noqa: F401


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
        # No /proc entry although kill() found it: gone meanwhile (dead), or there is no
        # procfs at all (macOS), where kill() is all there is to go by.
        return not Path("/proc/self").exists()
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
