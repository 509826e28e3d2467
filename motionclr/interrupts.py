"""Ctrl-C that is never lost.

Python raises ``KeyboardInterrupt`` wherever the main thread happens to be, and where that is
a fork callback (a DataLoader starting its workers), a ``__del__`` or a weakref callback,
the exception is printed as "ignored" and training goes on. The CLI's handler therefore
also sets a flag, and the loops call ``check()`` at safe points to raise it again. Once
interrupted, such "ignored" reports (the interrupt itself, and objects it left half-built)
are not printed: the user asked to stop, and gets one line.
"""
from __future__ import annotations

import signal
import sys
import threading

_pending = False


def _on_sigint(signum, frame):
    global _pending
    _pending = True
    raise KeyboardInterrupt


def _unraisable(args) -> None:
    if not _pending:
        _default_hook(args)


_default_hook = sys.unraisablehook


def install() -> None:
    """Take over SIGINT where Python's own handler has it (not where it is ignored, as in a
    shell's background job); main thread only, as ``signal`` requires."""
    if (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
        signal.signal(signal.SIGINT, _on_sigint)
        sys.unraisablehook = _unraisable


def pending() -> bool:
    """Whether a Ctrl-C has arrived in this process."""
    return _pending


def check() -> None:
    """Raise ``KeyboardInterrupt`` if a Ctrl-C arrived (and may have been swallowed)."""
    if _pending:
        raise KeyboardInterrupt


__all__ = ["install", "check", "pending"]
