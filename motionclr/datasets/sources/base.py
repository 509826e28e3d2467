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


def check_missing(entries: list[VideoEntry], dataset: str, where, expected: str = "") -> None:
    """Fail when no listed video exists (the root is wrong); warn when some are missing.

    Missing videos stay in the list: the flow stage records each as failed, "file not found".
    """
    missing = [e for e in entries if not e.path.is_file()]
    if entries and len(missing) == len(entries):
        raise FileNotFoundError(
            f"none of the {len(entries)} listed {dataset} videos exist under {where} "
            f"(first: {missing[0].path.name}{'; expected ' + expected if expected else ''}); "
            "is DATA_ROOT right?")
    if missing:
        import warnings
        warnings.warn(f"{dataset}: {len(missing)} of {len(entries)} listed videos are missing "
                      f"under {where} (first: {missing[0].video_id}; kept, the flow stage "
                      "records them as not found)")
