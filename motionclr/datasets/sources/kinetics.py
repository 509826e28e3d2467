"""Kinetics-400 from its CSV annotations.

Annotations: ``train.csv``, ``validate.csv`` (or ``val.csv``) and ``test.csv`` in
``<root>/annotations/`` or ``<root>/``, with the header
``label,youtube_id,time_start,time_end,split[,is_cc]`` (a test file without ``label`` gives -1).
Videos: ``<youtube_id>_<time_start:06d>_<time_end:06d>.{mp4,webm,mkv}``, either in per-label
folders ``<root>/<split dir>/<label>/`` or flat in ``<root>/<split dir>/``; split dirs are
``train``/``val``/``test`` (also ``videos_train``, ``train_256``, ``validate``, ...).
Files are found by name anywhere under the split dir, so label-folder spelling (spaces vs
underscores) does not matter.
Labels: 0-based index in the sorted label names of all annotation files read.
Subsets: "train", "val", "test". Only split 1 exists.
YouTube takedowns mean every copy misses some videos: missing ones stay in the list (the flow
stage records "file not found") and a warning gives the count; only "none exist" is fatal.
"""
from __future__ import annotations

import csv
import os
import re
import warnings
from pathlib import Path

from motionclr.datasets.sources.base import VideoEntry, check_missing, resolve_inside

SPLITS = (1,)
EXTS = (".mp4", ".webm", ".mkv")
ANNOTATIONS = {"train": ("train.csv",), "val": ("validate.csv", "val.csv", "validation.csv"),
               "test": ("test.csv",)}
SPLIT_DIRS = {"train": ("train", "videos_train", "train_256"),
              "val": ("val", "validate", "validation", "videos_val", "val_256"),
              "test": ("test", "videos_test", "test_256")}
_YT_ID = re.compile(r"^[A-Za-z0-9_-]+$")  # YouTube ids; anything else could form a path


def find_annotations(root: Path) -> dict[str, Path]:
    """subset -> CSV file; raises listing what was looked for when there is none."""
    found, tried = {}, []
    for subset, names in ANNOTATIONS.items():
        for d in (root / "annotations", root):
            for n in names:
                tried.append(str(d / n))
                if subset not in found and (d / n).is_file():
                    found[subset] = d / n
    if not found:
        raise FileNotFoundError(
            f"no Kinetics-400 annotation CSVs under {root}: looked for {', '.join(tried)}. "
            "Expected <root>/annotations/{train,validate,test}.csv and videos in "
            "<root>/{train,val,test}/[<label>/]<youtube_id>_<start:06d>_<end:06d>.mp4")
    return found


def _index(split_dir: Path) -> dict[str, Path]:
    """Video stem -> path for every video file under ``split_dir`` (sorted, first wins)."""
    out: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(split_dir):
        dirnames.sort()
        for f in sorted(filenames):
            stem, ext = os.path.splitext(f)
            if ext.lower() in EXTS:
                out.setdefault(stem, Path(dirpath) / f)
    return out


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if rows and not {"youtube_id", "time_start", "time_end"} <= set(rows[0]):
        raise ValueError(f"{path}: header must have youtube_id,time_start,time_end "
                         f"(and label); got {list(rows[0])}")
    return rows


def list_videos(root: str | Path, split: int = 1, check_files: bool = True) -> list[VideoEntry]:
    """Every annotated clip: train, then val, then test, in file order."""
    if split not in SPLITS:
        raise ValueError(f"Kinetics-400 has one split; valid: {list(SPLITS)}, got {split}")
    root = Path(root)
    rows = {s: _read_csv(f) for s, f in find_annotations(root).items()}
    classes = sorted({r["label"] for rs in rows.values() for r in rs if r.get("label")})
    index = {c: i for i, c in enumerate(classes)}
    entries, seen, dupes = [], set(), 0
    for subset, rs in rows.items():
        split_dir = next((root / d for d in SPLIT_DIRS[subset] if (root / d).is_dir()),
                         root / SPLIT_DIRS[subset][0])
        videos = _index(split_dir) if check_files else {}
        for r in rs:
            yt = r["youtube_id"].strip()
            if not _YT_ID.match(yt):
                raise ValueError(f"{subset} annotations: bad youtube_id {yt!r}")
            stem = f"{yt}_{int(float(r['time_start'])):06d}_{int(float(r['time_end'])):06d}"
            if stem in seen:  # a few rows repeat in some annotation releases
                dupes += 1
                continue
            seen.add(stem)
            # A missing clip gets the flat-layout path so it still has a stable id.
            path = videos.get(stem) or resolve_inside(root, f"{split_dir.name}/{stem}.mp4")
            label = r.get("label") or ""
            entries.append(VideoEntry(
                path=path, video_id=path.relative_to(root).with_suffix("").as_posix(),
                label=index.get(label, -1), label_name=label, subset=subset))
    if dupes:
        warnings.warn(f"kinetics400: skipped {dupes} repeated annotation rows")
    if check_files:
        check_missing(entries, "kinetics400", root,
                      f"<youtube_id>_<start:06d>_<end:06d>.{{mp4,webm,mkv}} in "
                      f"{', '.join(d for ds in SPLIT_DIRS.values() for d in ds)}")
    return entries
