"""Reading a pretraining checkpoint: the one gate that both resume and evaluation pass.

Loaded with ``weights_only=True``, so a hostile pickle is refused instead of executed, and
a file without our marker (a foreign ``state_dict``, another project's checkpoint) is
refused with the same one line, whoever asks: ``... is not a motionclr checkpoint``.
"""
from __future__ import annotations

from pathlib import Path

import torch

MARKER = "motionclr_checkpoint"
REQUIRED = ("model", "epoch", "config")


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint at ``path`` as a dict, on the CPU.

    Raises:
        ValueError: not a motionclr checkpoint (unreadable, unpickling refused, no marker,
        or a required entry missing).
    """
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means: not ours
        raise ValueError(f"{path} is not a motionclr checkpoint ({_first_line(e)})") from None
    if not isinstance(ckpt, dict) or MARKER not in ckpt:
        raise ValueError(f"{path} is not a motionclr checkpoint (no motionclr marker)")
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise ValueError(f"{path} is not a motionclr checkpoint (no {', '.join(missing)})")
    return ckpt


def load_weights(module: torch.nn.Module, state: dict, path: str | Path) -> None:
    """``module.load_state_dict(state)``, with a mismatch as one line naming ``path``."""
    try:
        module.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path} does not fit this model ({_first_line(e)})") from None


__all__ = ["read_checkpoint", "load_weights", "MARKER"]
