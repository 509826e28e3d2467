"""Deterministic test views shared by the feature extractor and finetune testing.

Temporal: ``UniformClips`` (N uniformly spaced clips) or ``DenseClips`` (CoCLR's
half-overlapping windows). Spatial: ``view_boxes`` (1 centre, 3 along the long side, 5 / 10
corner crops). ``crop_views`` cuts every clip of a video at every box: no randomness.
"""
from __future__ import annotations

import torch

from motionclr.datasets.samplers import UniformClips, clip_indices, max_start
from motionclr.datasets.transforms import center_crop_boxes, crop_resize, to_float


class DenseClips:
    """CoCLR's test windows: every window start ``step`` frames apart (default: half the
    window span minus one, i.e. 15 for 32 frames), so the count depends on the length."""

    def __init__(self, clip_len: int = 16, stride: int = 1, step: int | None = None):
        span = (clip_len - 1) * stride + 1
        self.clip_len, self.stride, self.step = clip_len, stride, step or max(1, span // 2 - 1)

    def __call__(self, n_frames, rng=None, info=None):
        hi = max_start(n_frames, self.clip_len, self.stride)
        return [clip_indices(s, self.clip_len, self.stride, n_frames)
                for s in range(0, hi + 1, self.step)]


def clip_sampler(clips, clip_len: int, stride: int):
    """``clips`` = an int (that many uniform clips) or ``"dense"`` (``DenseClips``)."""
    return DenseClips(clip_len, stride) if clips == "dense" else UniformClips(clip_len, stride,
                                                                              clips)


def view_boxes(H: int, W: int, crops: int, crop_frac: float = 0.875):
    """Spatial test crops of an H x W frame: ``(n, 4)`` ``[x0, y0, w, h]`` and ``(n,)`` flips.

    1: the centred square of side min(H, W); 3: that square at the start, centre and end of
    the long side (left/centre/right or top/centre/bottom); 5 / 10: a ``crop_frac`` square at
    the 4 corners and the centre (CoCLR, 224 of 256), 10 adding their mirror images.
    """
    if crops == 1:
        return center_crop_boxes(1, H, W, 1), torch.zeros(1, dtype=torch.bool)
    if crops == 3:
        s = min(H, W)
        pos = [0, (max(H, W) - s) // 2, max(H, W) - s]
        b = [[p, 0, s, s] if W >= H else [0, p, s, s] for p in pos]
        return torch.tensor(b, dtype=torch.float32), torch.zeros(3, dtype=torch.bool)
    if crops in (5, 10):
        s = int(round(min(H, W) * crop_frac))
        xy = [(0, 0), (W - s, 0), (0, H - s), (W - s, H - s), ((W - s) // 2, (H - s) // 2)]
        b = torch.tensor([[x, y, s, s] for x, y in xy], dtype=torch.float32)
        flips = torch.zeros(5, dtype=torch.bool)
        if crops == 10:
            b, flips = torch.cat([b, b]), torch.cat([flips, ~flips])
        return b, flips
    raise ValueError(f"crops must be 1, 3, 5 or 10, got {crops}")


def crop_views(rgb: torch.Tensor, crops: int, size: int,
               crop_frac: float = 0.875) -> torch.Tensor:
    """One video's uint8 clips ``(V, 3, T, H, W)`` -> float [0, 1] views
    ``(crops * V, 3, T, size, size)``, grouped by crop (crop 0 of every clip first); not yet
    normalised."""
    x = to_float({"rgb": rgb})["rgb"]
    boxes, flips = view_boxes(x.shape[-2], x.shape[-1], crops, crop_frac)
    views = [crop_resize(x, b.expand(len(x), 4), size) for b in boxes]
    return torch.cat([v.flip(-1) if f else v for v, f in zip(views, flips.tolist())])
