"""One rule for every place that takes a torch device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.

``auto`` is CUDA when torch sees a GPU, else the CPU. Asking for CUDA where there is none
fails at once with one line (the CLI exits 2), before any work is done or any file written.
"""
from __future__ import annotations

from motionclr.errors import UserError

CHOICES = "auto, cpu, cuda or cuda:N"


def resolve_device(name: str = "auto", local_rank: int | None = None):
    """``torch.device`` for ``name``; ``local_rank`` picks the GPU of a torchrun process.

    Raises:
        UserError: CUDA asked for (or ``cuda:N`` past the last GPU) but not available, or a
        name torch does not know.
    """
    import torch
    name = str(name or "auto").strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use {CHOICES}") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            build = torch.version.cuda or "none (a CPU-only build)"
            raise UserError(f"device {name!r} asked for, but torch sees no CUDA GPU (torch "
                            f"{torch.__version__}, CUDA {build}); use device=cpu or device=auto")
        if dev.index is None and local_rank is not None:
            dev = torch.device("cuda", local_rank)
        if dev.index is not None and dev.index >= n:
            raise UserError(f"device {str(dev)!r} asked for, but torch sees {n} CUDA GPU(s)")
    return dev


__all__ = ["resolve_device", "CHOICES"]
