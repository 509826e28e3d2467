"""RAFT optical flow (torchvision ``raft_small`` / ``raft_large``) behind the flow interface.

Weights come only from a local ``checkpoint`` file (a torchvision-format state_dict, e.g. the
files torchvision would download, copied in by hand): nothing is ever downloaded. Without one
the call fails, naming the config option ``flow.params.checkpoint``; random weights exist only
for plumbing tests (``allow_random_weights=True``, never the default).

Frames are fed as RGB in [-1, 1] (torchvision's ``OpticalFlow`` preset), replicate-padded to a
multiple of 8 and the flow cropped back; only the last refinement is kept.
"""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

MIN_SIZE = 128  # torchvision weight metadata: min_size (128, 128)
_MODELS: dict = {}  # (arch, checkpoint, device) -> model, so videos reuse a loaded model


def _load_state_dict(path: str) -> dict:
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and isinstance(sd.get("model"), dict):  # training checkpoints
        sd = sd["model"]
    if not isinstance(sd, dict):
        raise ValueError(f"{path} does not hold a state_dict")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def load_model(arch: str, checkpoint: str | None, device="cpu",
               allow_random_weights: bool = False) -> torch.nn.Module:
    """Build ``arch`` ("raft_small" / "raft_large") in eval mode with weights from ``checkpoint``.

    Raises:
        FileNotFoundError: no checkpoint given (and random weights not allowed) or missing file.
        RuntimeError: the file's keys do not fit the architecture (e.g. an original
            princeton-vl ``raft-things.pth``, whose key names differ from torchvision's).
    """
    from torchvision.models import optical_flow

    if arch not in ("raft_small", "raft_large"):
        raise ValueError(f"unknown RAFT architecture {arch!r}; valid: ['raft_large', 'raft_small']")
    if checkpoint is None and not allow_random_weights:
        raise FileNotFoundError(
            f"{arch} needs local weights: set flow.params.checkpoint to a torchvision {arch} "
            f"state_dict file (e.g. {arch}_C_T_V2-*.pth); nothing is downloaded at run time")
    if checkpoint is not None and not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"flow.params.checkpoint: no such file {checkpoint!r}")
    key = (arch, None if checkpoint is None else os.path.abspath(checkpoint), str(device))
    if key not in _MODELS or checkpoint is None:  # random models are never cached
        model = getattr(optical_flow, arch)(weights=None, progress=False)
        if checkpoint is not None:
            model.load_state_dict(_load_state_dict(checkpoint))
        model = model.eval().to(device)
        if checkpoint is None:
            return model
        _MODELS[key] = model
    return _MODELS[key]


def _to_input(frames: torch.Tensor) -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` -> float ``(T, 3, H, W)`` in [-1, 1]."""
    return frames.permute(0, 3, 1, 2).float().mul_(2.0 / 255.0).sub_(1.0)


def raft_pairs(model: torch.nn.Module, img0: torch.Tensor, img1: torch.Tensor,
               num_flow_updates: int = 12) -> torch.Tensor:
    """Flow for a batch of pairs.

    Args:
        model: a torchvision RAFT in eval mode.
        img0, img1: ``(N, 3, H, W)`` float RGB in [-1, 1] on the model's device.
        num_flow_updates: refinement iterations (12 default; torchvision evaluates Sintel with 32).
    Returns:
        float32 ``(N, H, W, 2)`` (dx, dy).
    """
    h, w = img0.shape[-2:]
    ph, pw = (-h) % 8, (-w) % 8
    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)  # symmetric, as torchvision's InputPadder
    if ph or pw:
        img0 = F.pad(img0, pad, mode="replicate")
        img1 = F.pad(img1, pad, mode="replicate")
    with torch.no_grad():
        flow = model(img0, img1, num_flow_updates=num_flow_updates)[-1]
    flow = flow[..., pad[2]:pad[2] + h, pad[0]:pad[0] + w]
    return flow.permute(0, 2, 3, 1).float().contiguous()


def _raft(arch: str, frames, device="cpu", checkpoint: str | None = None,
          num_flow_updates: int = 12, batch_size: int = 8, allow_random_weights: bool = False,
          **params):
    if params:
        raise ValueError(f"unknown {arch} parameter(s) {sorted(params)}; valid: "
                         f"['allow_random_weights', 'batch_size', 'checkpoint', "
                         f"'num_flow_updates']")
    is_numpy = isinstance(frames, np.ndarray)
    x = torch.from_numpy(frames) if is_numpy else frames
    if not torch.is_tensor(x) or x.dim() != 4 or x.shape[-1] != 3 or x.dtype != torch.uint8:
        raise ValueError(f"expected uint8 frames (T,H,W,3), got "
                         f"{getattr(x, 'dtype', type(x))} {tuple(getattr(x, 'shape', ()))}")
    t, h, w, _ = x.shape
    if min(h, w) < MIN_SIZE:
        raise ValueError(f"{arch} needs frames of at least {MIN_SIZE}x{MIN_SIZE}, got {w}x{h}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    model = load_model(arch, checkpoint, device, allow_random_weights)
    out = torch.empty((max(t - 1, 0), h, w, 2), dtype=torch.float32, device=device)
    for s in range(0, t - 1, batch_size):
        e = min(s + batch_size, t - 1)
        chunk = _to_input(x[s:e + 1].to(device))
        out[s:e] = raft_pairs(model, chunk[:-1], chunk[1:], num_flow_updates)
    return out.cpu().numpy() if is_numpy else out


def raft_small(frames, device="cpu", checkpoint: str | None = None, num_flow_updates: int = 12,
               batch_size: int = 8, **params):
    """torchvision RAFT-small (0.99 M parameters) flow between consecutive frames.

    Args:
        frames: uint8 RGB ``(T, H, W, 3)`` (numpy or tensor), H and W >= 128.
        device: torch device.
        checkpoint: path of a local torchvision ``raft_small`` state_dict (required).
        num_flow_updates: RAFT refinement iterations; only the last one is returned.
        batch_size: pairs per forward pass.
        **params: ``allow_random_weights`` (tests only); anything else raises ValueError.
    Returns:
        float32 ``(T-1, H, W, 2)`` (dx, dy): numpy for numpy input, else a tensor on ``device``.
    """
    return _raft("raft_small", frames, device, checkpoint, num_flow_updates, batch_size, **params)


def raft_large(frames, device="cpu", checkpoint: str | None = None, num_flow_updates: int = 12,
               batch_size: int = 8, **params):
    """torchvision RAFT-large (5.26 M parameters); same interface as :func:`raft_small`."""
    return _raft("raft_large", frames, device, checkpoint, num_flow_updates, batch_size, **params)


__all__ = ["raft_small", "raft_large", "raft_pairs", "load_model", "MIN_SIZE"]
