"""uint8 flow quantisation (the TSN/I3D convention).

A flow value v is clipped to [-b, b] and mapped linearly onto 0..255:
``q = round((v + b) * 255 / (2b))``; it dequantises as ``q * 2b / 255 - b``.
The step is 2b/255 (0.157 px for b=20), so the round trip error is at most b/255.
"""
from __future__ import annotations

import numpy as np

DEFAULT_BOUND = 20.0


def quantize(flow: np.ndarray, bound: float = DEFAULT_BOUND) -> np.ndarray:
    """float flow (any shape) -> uint8, clipped to [-bound, bound]."""
    if bound <= 0:
        raise ValueError(f"bound must be positive, got {bound}")
    scaled = (np.clip(flow, -bound, bound) + bound) * (255.0 / (2.0 * bound))
    return np.rint(scaled).astype(np.uint8)


def dequantize(q, bound: float = DEFAULT_BOUND):
    """uint8 flow -> float32 pixels: ``q * 2b/255 - b``. Accepts numpy arrays or torch tensors."""
    if hasattr(q, "float") and not isinstance(q, np.ndarray):  # torch tensor: stay on its device
        return q.float() * (2.0 * bound / 255.0) - bound
    return np.asarray(q, dtype=np.float32) * np.float32(2.0 * bound / 255.0) - np.float32(bound)
