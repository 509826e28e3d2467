"""Provenance: what produced a run or stage directory, and a log of what was printed.

``record(target, kind)`` appends one JSON line to ``provenance.jsonl`` in a directory (a
run, a flow stage) or beside a file (``index-<hash>.provenance.jsonl``): the command line,
working directory, motionclr version, git commit of the source tree when it is a git
checkout (and whether it had uncommitted changes), Python and library versions, host and
platform, and the time. Appending, not overwriting: a run resumed three times keeps four
lines, one per invocation.

The CLI also turns on capture (``start_capture``): from then on, what the process prints
to ``sys.stdout``/``sys.stderr`` is copied into ``log.txt`` of each recorded directory
(``index-<hash>.log.txt`` beside a file), progress-bar redraws reduced to their last state.
A stage's log ends when the next run or stage is recorded, or at ``scope()``'s end; a
run's log when another run is recorded or the command ends (a stage built during a run
is logged in both). Output of worker processes is not copied.
"""
from __future__ import annotations

import contextlib
import datetime
import functools
import json
import os
import platform
import shlex
import socket
import subprocess
import sys
from pathlib import Path

# Distributions whose versions matter for results; the OpenCV one is whichever is installed.
LIBRARIES = ("torch", "torchvision", "numpy", "h5py", "opencv-contrib-python-headless",
             "opencv-python-headless", "opencv-contrib-python", "opencv-python",
             "ffmpeg-python", "imageio-ffmpeg", "hdf5plugin", "joblib", "pyyaml",
             "tensorboard", "scikit-learn", "scipy")
RUN_KINDS = ("pretrain", "eval")   # a run directory; anything else is a stage

_command: list[str] | None = None  # the CLI's argv, set by start_capture


def library_versions() -> dict[str, str]:
    from motionclr.envcheck import installed_versions
    return installed_versions(LIBRARIES)


@functools.lru_cache(maxsize=1)
def git_state() -> dict | None:
    """{"commit", "dirty"} of the source tree this package is imported from, or None
    (an installed wheel, or no git)."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        def git(*args):
            return subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                                  text=True, timeout=10, check=True).stdout.strip()
        return {"commit": git("rev-parse", "HEAD"),
                "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return None


@functools.lru_cache(maxsize=1)
def _static() -> dict:
    from motionclr import __version__
    return {"motionclr": __version__, "git": git_state(), "python": platform.python_version(),
            "libraries": library_versions(), "host": socket.gethostname(),
            "platform": platform.platform()}


def collect(kind: str, extra: dict | None = None) -> dict:
    """The provenance record of this process for a ``kind`` of output."""
    argv = _command if _command is not None else [Path(sys.argv[0]).name, *sys.argv[1:]]
    rec = {"kind": kind,
           "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "command": shlex.join(argv), "cwd": os.getcwd(), **_static()}
    if "torch" in sys.modules:  # only when already imported: a flow run need not load torch
        import torch
        rec["cuda"] = {"build": torch.version.cuda, "available": torch.cuda.is_available(),
                       "devices": [torch.cuda.get_device_name(i)
                                   for i in range(torch.cuda.device_count())]
                       if torch.cuda.is_available() else []}
    rec.update(extra or {})
    return rec


def paths_for(target: str | Path) -> tuple[Path, Path]:
    """(provenance.jsonl, log.txt) of a directory, or beside a file (``<stem>.*``)."""
    target = Path(target)
    if target.suffix and not target.is_dir():
        return (target.with_name(f"{target.stem}.provenance.jsonl"),
                target.with_name(f"{target.stem}.log.txt"))
    return target / "provenance.jsonl", target / "log.txt"


def record(target: str | Path, kind: str, extra: dict | None = None) -> dict:
    """Append this process's provenance for ``target`` and, under capture, start its log."""
    prov, log = paths_for(target)
    rec = collect(kind, extra)
    from motionclr.atomic import storage
    with storage(prov.parent):  # a full disk: the same one line as every other write
        prov.parent.mkdir(parents=True, exist_ok=True)
        with open(prov, "a") as f:
            f.write(json.dumps(rec, default=str) + "\n")
        if _tee is not None:
            _tee.attach(log, kind, f"=== {rec['time']} {rec['command']} ({kind}) ===\n")
    return rec


class _Stream:
    """Writes go to the original stream and, line by line, to every attached log; anything
    else (``encoding``, ``isatty``, ``fileno``, ...) is the original stream's."""

    def __init__(self, tee: _Tee, orig):
        self._tee, self._orig, self._pending = tee, orig, ""

    def write(self, s: str) -> int:
        n = self._orig.write(s)
        self._pending += s.replace("\r\n", "\n")
        if "\n" in self._pending:
            *lines, self._pending = self._pending.split("\n")
            # A progress bar redraws with "\r": keep what the line finally showed.
            text = [ln.rsplit("\r", 1)[-1] for ln in lines]
            self._tee.emit("".join(t + "\n" for t, ln in zip(text, lines)
                                   if t.strip() or "\r" not in ln))
        # Only the current state of a line being redrawn is kept (a bar runs for days).
        self._pending = self._pending.rsplit("\r", 1)[-1] if "\r" in self._pending[:-1] \
            else self._pending
        return len(s) if n is None else n

    def flush(self):
        self._orig.flush()

    def __getattr__(self, name):  # isatty, fileno, encoding, ...: the original's
        return getattr(self._orig, name)


class _Tee:
    def __init__(self):
        self.logs: dict[Path, tuple[object, str]] = {}
        self.orig = (sys.stdout, sys.stderr)
        sys.stdout, sys.stderr = _Stream(self, sys.stdout), _Stream(self, sys.stderr)

    def attach(self, path: Path, kind: str, header: str) -> None:
        path = Path(path).absolute()
        if path in self.logs:
            return
        for p, (_, k) in list(self.logs.items()):
            if kind in RUN_KINDS or k not in RUN_KINDS:  # a run ends every earlier log, a
                self.detach(p)                           # stage ends earlier stages' logs
        f = open(path, "a", buffering=1)
        f.write(header)
        self.logs[path] = (f, kind)

    def detach(self, path: Path) -> None:
        f, _ = self.logs.pop(Path(path).absolute(), (None, None))
        if f is not None:
            f.close()

    def emit(self, text: str) -> None:
        for f, _ in self.logs.values():
            with contextlib.suppress(OSError, ValueError):  # a full disk must not stop the run
                f.write(text)

    def close(self) -> None:
        for s in (sys.stdout, sys.stderr):
            if isinstance(s, _Stream) and s._pending.strip():
                self.emit(s._pending.rsplit("\r", 1)[-1] + "\n")
        sys.stdout, sys.stderr = self.orig
        for p in list(self.logs):
            self.detach(p)


_tee: _Tee | None = None


def start_capture(argv: list[str]) -> None:
    """Called by the CLI: record ``argv`` as the command, copy printed output into logs."""
    global _command, _tee
    _command = ["motionclr", *argv]
    if _tee is None:
        _tee = _Tee()


def stop_capture() -> None:
    global _command, _tee
    if _tee is not None:
        _tee.close()
    _tee, _command = None, None


@contextlib.contextmanager
def scope():
    """Logs started inside the block end with it (a stage built inside a longer command)."""
    before = set(_tee.logs) if _tee is not None else set()
    try:
        yield
    finally:
        if _tee is not None:
            for p in set(_tee.logs) - before:
                _tee.detach(p)


__all__ = ["record", "collect", "paths_for", "start_capture", "stop_capture", "scope",
           "library_versions", "git_state"]
