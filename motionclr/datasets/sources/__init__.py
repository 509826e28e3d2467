"""Dataset sources: each lists videos, 0-based labels and split membership.

``SOURCES[name](root, split)`` -> list of ``VideoEntry``. The synthetic dataset is written
in the UCF101 layout, so it is read by the UCF101 source: the demo runs the real code path.
"""
from __future__ import annotations

from motionclr.datasets.sources import ucf101
from motionclr.datasets.sources.base import VideoEntry

SOURCES = {
    "ucf101": ucf101.list_videos,
    "synthetic": ucf101.list_videos,
}


def list_videos(dataset: str, root, split: int = 1) -> list[VideoEntry]:
    if dataset not in SOURCES:
        raise ValueError(f"unknown dataset {dataset!r}; valid: {sorted(SOURCES)}")
    return SOURCES[dataset](root, split)


__all__ = ["SOURCES", "VideoEntry", "list_videos"]
