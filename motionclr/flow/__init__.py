"""Optical flow behind one interface.

``compute_flow(frames, method, device, **params)``: uint8 RGB ``(T, H, W, 3)`` ->
float32 ``(T-1, H, W, 2)``; ``flow[i]`` maps frame i to frame i+1 as (dx, dy) in pixels.
Estimators are registered by name -> "module:function" and imported on first use, so
OpenCV-only users never import torch-heavy modules and vice versa. Each engine's parameters
have a typed schema (``motionclr.flow.params``), checked before any work.
"""
from __future__ import annotations

import importlib

import numpy as np

from motionclr.flow.quantize import DEFAULT_BOUND, dequantize, quantize

FLOW_METHODS = {
    "tvl1": "motionclr.flow.opencv:tvl1",
    "farneback": "motionclr.flow.opencv:farneback",
    "dis": "motionclr.flow.opencv:dis",
    "tvl1_torch": "motionclr.flow.tvl1_torch:tvl1_torch",
    "raft_small": "motionclr.flow.raft:raft_small",
    "raft_large": "motionclr.flow.raft:raft_large",
}


def get_flow_fn(method: str):
    if method not in FLOW_METHODS:
        raise ValueError(f"unknown flow method {method!r}; valid: {sorted(FLOW_METHODS)}")
    module, fn = FLOW_METHODS[method].split(":")
    return getattr(importlib.import_module(module), fn)


def compute_flow(frames, method: str = "tvl1", device: str = "cpu", **params):
    """Flow for each consecutive pair of ``frames``.

    Args:
        frames: uint8 ``(T, H, W, 3)`` RGB, numpy array or torch tensor.
        method: one of ``FLOW_METHODS``.
        device: torch device for the torch-based methods ("auto", "cpu", "cuda", "cuda:1").
        **params: estimator parameters (unknown names raise with the valid ones).
    Returns:
        float32 ``(T-1, H, W, 2)`` as (dx, dy); a numpy array (a tensor if given a tensor).
    """
    fn = get_flow_fn(method)
    if device == "auto":  # CUDA when present; OpenCV methods ignore the device
        from motionclr.devices import resolve_device
        device = str(resolve_device(device))
    is_tensor = not isinstance(frames, np.ndarray) and hasattr(frames, "cpu")
    if is_tensor and method in ("tvl1", "farneback", "dis"):
        import torch
        return torch.from_numpy(fn(frames.cpu().numpy(), device=device, **params))
    return fn(frames, device=device, **params)


def validate_flow(method: str, params: dict, device: str = "cpu") -> None:
    """Check ``method``, its ``params`` (typed schema) and the torch ``device`` before any
    video is decoded: ValueError for a config mistake, EnvironmentFailure for a machine that
    cannot run it (CUDA asked for but absent, a missing checkpoint)."""
    from motionclr.flow.params import check_device, validate_flow_params
    validate_flow_params(method, params)
    check_device(method, device)


__all__ = ["compute_flow", "quantize", "dequantize", "DEFAULT_BOUND", "FLOW_METHODS",
           "get_flow_fn", "validate_flow"]
