"""Per-iteration schedules, precomputed once (DINO style) and indexed by the global step."""
from __future__ import annotations

import numpy as np


def cosine_schedule(base: float, final: float, epochs: int, iters_per_epoch: int,
                    warmup_epochs: float = 0, warmup_start: float = 0.0) -> np.ndarray:
    """Linear warm-up from ``warmup_start`` to ``base``, then cosine from ``base`` to ``final``.

    Returns an array of length ``epochs * iters_per_epoch``.
    """
    total = epochs * iters_per_epoch
    warm = min(int(round(warmup_epochs * iters_per_epoch)), total)
    warmup = np.linspace(warmup_start, base, warm, endpoint=False) if warm else np.array([])
    steps = np.arange(total - warm)
    cos = final + 0.5 * (base - final) * (1 + np.cos(np.pi * steps / max(len(steps), 1)))
    out = np.concatenate([warmup, cos])
    assert len(out) == total
    return out
