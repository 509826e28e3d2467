"""What a dataset source returns: the videos, their 0-based labels and split membership.

A source only lists; decoding, flow, packing and reading are shared by every dataset.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class VideoEntry:
    path: Path               # absolute path of the video file
    video_id: str            # unique within the dataset: path relative to the root, no suffix
    label: int               # 0-based class index; -1 when unknown
    label_name: str          # class name as the dataset spells it
    subset: str              # "train" | "test" | "val" | "unused" for the selected split
    group: str | None = None  # source group (UCF101 gXX) for leakage checks


def resolve_inside(root: Path, rel: str) -> Path:
    """Join an annotation-file path onto ``root``, refusing absolute paths and ``..`` escapes."""
    if Path(rel).is_absolute() or ".." in Path(rel).parts:
        raise ValueError(f"annotation path {rel!r} must be relative and stay inside {root}")
    return root / rel
