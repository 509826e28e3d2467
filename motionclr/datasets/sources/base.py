"""What a dataset source returns: the videos, their 0-based labels and split membership.

A source only lists; decoding, flow, packing and reading are shared by every dataset.
"""
from __future__ import annotations

import os
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
    """Join an annotation-file path onto ``root``, refusing absolute paths and ``..`` escapes
    (and symlinks that lead out of ``root``, ``refuse_escapes``)."""
    if Path(rel).is_absolute() or ".." in Path(rel).parts:
        raise ValueError(f"annotation path {rel!r} must be relative and stay inside {root}")
    refuse_escapes(root, [root / rel])
    return root / rel


def refuse_escapes(root, paths) -> None:
    """Refuse any path whose real location (symlinks followed, in the file or any folder
    above it) lies outside ``root``: a link out of the dataset is treated like ``../``."""
    real_root = os.path.realpath(root)
    parents: dict[str, str] = {}
    for p in paths:
        p = str(p)
        if not os.path.lexists(p):
            continue
        d, name = os.path.split(p)
        if d not in parents:  # folders are few: resolve each once
            parents[d] = os.path.realpath(d)
        real = os.path.realpath(p) if os.path.islink(p) else os.path.join(parents[d], name)
        if os.path.commonpath([real_root, real]) != real_root:
            raise ValueError(f"{p} is a symlink to {real}, outside the dataset root: paths "
                             f"must stay inside {root}")


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
