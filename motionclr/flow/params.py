"""Typed schemas of each flow engine's parameters (``flow.params``), checked before any work.

A schema maps a parameter name to its type (``int``, ``float``, ``bool``, ``str``) or to a
tuple of allowed strings. An unknown name fails at once, naming the valid ones, as the
top-level config keys do; a wrong type fails naming the expected one. Schemas of the torch
engines are read from their modules only when that engine is chosen (OpenCV-only users
never import torch).
"""
from __future__ import annotations

import os

from motionclr.errors import EnvironmentFailure

TORCH_ENGINES = ("tvl1_torch", "raft_small", "raft_large")


def _from_defaults(defaults: dict) -> dict:
    return {k: type(v) for k, v in defaults.items()}


def schema(method: str) -> dict:
    """name -> type (or tuple of allowed strings) of every parameter of ``method``."""
    from motionclr.flow import FLOW_METHODS
    if method not in FLOW_METHODS:
        raise ValueError(f"unknown flow method {method!r}; valid: {sorted(FLOW_METHODS)}")
    if method in ("tvl1", "farneback", "dis"):
        from motionclr.flow import opencv
        if method == "dis":
            return {"preset": ("ultrafast", "fast", "medium")}
        return _from_defaults(opencv.TVL1_DEFAULTS if method == "tvl1"
                              else opencv.FARNEBACK_DEFAULTS)
    if method == "tvl1_torch":
        from motionclr.flow import tvl1_torch
        out = _from_defaults(tvl1_torch.OPENCV_PRESET)
        out.update({alias: out[name] for alias, name in tvl1_torch._ALIASES.items()})
        out.update(preset=tuple(tvl1_torch.PRESETS), batch_size=int,
                   interpolation=("bicubic", "bilinear"), pyramid=("opencv", "antialias"))
        return out
    if method in ("raft_small", "raft_large"):
        return {"checkpoint": str, "num_flow_updates": int, "batch_size": int,
                "allow_random_weights": bool}
    # An engine registered elsewhere declares its schema on its function (none: no params).
    from motionclr.flow import get_flow_fn
    return dict(getattr(get_flow_fn(method), "params_schema", {}))


def _check_type(key: str, value, want) -> None:
    if isinstance(want, tuple):
        if value not in want:
            raise ValueError(f"{key}: expected one of {list(want)}, got {value!r}")
        return
    ok = {bool: isinstance(value, bool),
          int: isinstance(value, int) and not isinstance(value, bool),
          float: isinstance(value, (int, float)) and not isinstance(value, bool),
          str: isinstance(value, str)}[want]
    if not ok:
        raise ValueError(f"{key}: expected {want.__name__}, got {value!r}")


def validate_flow_params(method: str, params: dict) -> None:
    """Raise ValueError for an unknown method, an unknown parameter or a wrong type; for
    RAFT, EnvironmentFailure when the checkpoint file is not there."""
    valid = schema(method)
    if not isinstance(params, dict):
        raise ValueError(f"flow.params: expected a mapping, got {params!r}")
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(f"unknown flow.params key(s) {['flow.params.' + k for k in unknown]} "
                         f"for flow.method={method}; valid: {sorted(valid)}")
    for k, v in params.items():
        _check_type(f"flow.params.{k}", v, valid[k])
    for k in ("batch_size", "num_flow_updates"):
        if k in params and params[k] < 1:
            raise ValueError(f"flow.params.{k} must be >= 1, got {params[k]}")
    if method == "tvl1":
        import cv2
        if not hasattr(cv2, "optflow"):
            raise EnvironmentFailure("flow.method=tvl1 needs cv2.optflow: install "
                                     "opencv-contrib-python(-headless), not opencv-python")
    if method == "tvl1_torch":  # the engine's own value checks (gamma, presets, ...)
        from motionclr.flow.tvl1_torch import resolve_params
        rest = {k: v for k, v in params.items() if k not in ("preset", "batch_size")}
        resolve_params(params.get("preset", "opencv"), **rest)
    if method.startswith("raft_"):
        ckpt = params.get("checkpoint")
        if ckpt is None and not params.get("allow_random_weights", False):
            raise ValueError(f"{method} needs local weights: set flow.params.checkpoint to a "
                             f"torchvision {method} state_dict file; nothing is downloaded")
        if ckpt is not None and not os.path.isfile(ckpt):
            raise EnvironmentFailure(f"flow.params.checkpoint: no such file {ckpt!r}")


def check_device(method: str, device: str) -> None:
    """Refuse a torch device this machine does not have, before any video is decoded.

    The OpenCV engines ignore ``flow.device`` (they run on the CPU), so it is checked for
    the torch engines only.
    """
    if method not in TORCH_ENGINES:
        return
    import torch
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as e:
        raise ValueError(f"flow.device: {e}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "no CUDA device"
            try:  # torch's own reason (e.g. "Found no NVIDIA driver on your system")
                torch.cuda.init()
            except Exception as e:  # noqa: BLE001 - only its message is used
                why = str(e).strip().splitlines()[0] if str(e).strip() else why
            raise EnvironmentFailure(f"flow.device={device} but CUDA is not available here "
                                     f"({why}); use flow.device=cpu (DEVICE=cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise EnvironmentFailure(f"flow.device={device} but this machine has "
                                     f"{torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise EnvironmentFailure(f"flow.device={device} but MPS is not available here")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"flow.device={device}: expected cpu, cuda[:i] or mps")


def device_kind(method: str, device: str) -> str:
    """What of the device changes a torch engine's numbers (CPU vs GPU kernels): its type.
    The OpenCV engines always run on the CPU."""
    if method not in TORCH_ENGINES:
        return "cpu"
    return str(device).split(":")[0]


__all__ = ["schema", "validate_flow_params", "check_device", "device_kind", "TORCH_ENGINES"]
