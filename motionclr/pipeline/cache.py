"""Content-addressed stage directories: the name is a hash of everything that determines
the output, so the same config is a cache hit and a changed one gets a new directory."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


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


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write to a temporary name in the same directory, fsync, then rename over ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
