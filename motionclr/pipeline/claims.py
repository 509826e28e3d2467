"""Who computes what: a video (or the packing) is claimed by one process at a time.

The stage directory is shared by any number of processes (joblib, Ray, Dask, array
tasks); ``<vkey>.claim`` files created with ``O_EXCL`` decide who works on what.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from motionclr.pipeline.cache import pid_alive
from motionclr.storage.shards import video_key


def claim(parts_dir: Path, video_id: str, lease_s: float = 6 * 3600) -> bool:
    """Atomically claim a video for this process (``O_CREAT | O_EXCL`` on ``<vkey>.claim``).

    A claim held by a dead process on this host, or older than ``lease_s`` (a worker on
    another machine that died), is taken over. Returns False if someone else holds it.
    """
    path = parts_dir / f"{video_key(video_id)}.claim"
    me = {"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                held = json.loads(path.read_text() or "null")
                age = time.time() - path.stat().st_mtime
            except FileNotFoundError:
                continue  # released meanwhile: try again
            except (OSError, ValueError):
                held, age = None, 0.0
            mine = bool(held) and held.get("host") == me["host"] and held.get("pid") == me["pid"]
            if not held:
                # Created but not written yet: its owner is writing it right now.
                stale = age > lease_s
            else:
                stale = (held.get("host") == me["host"] and not pid_alive(int(held["pid"])))
                stale = stale or time.time() - float(held.get("time", 0)) > lease_s
            if mine or not stale:
                return mine
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        return True
    return False


def release(parts_dir: Path, video_id: str) -> None:
    (parts_dir / f"{video_key(video_id)}.claim").unlink(missing_ok=True)
