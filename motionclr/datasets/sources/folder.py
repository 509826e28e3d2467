"""A user's own videos, in one of three layouts (tried in this order).

1. An annotation file: ``root`` is a ``.csv``/``.tsv`` file, or ``<root>/annotations.csv``
   (``.tsv``) exists. Rows ``path,label,split[,group]``; the header is optional (a first row
   starting with ``path`` is one, and then names the columns). ``path`` is relative to the
   file's folder; ``label`` is a class name, or an int for every row (then taken as the 0-based
   id); ``split`` is train/val/test/unused, or empty for the hash split below; ``group`` (e.g.
   the source video) keeps related clips on one side of the hash split.
2. ``<root>/train/<class>/<video>`` beside ``<root>/test/`` and/or ``<root>/val/``.
3. ``<root>/<class>/<video>`` (videos may sit in sub-folders of the class folder): a video is
   "test" when a hash of its path (or group) falls below ``test_fraction``, else "train".
   The hash is of the relative path, so the split does not change when videos are added,
   but it is not stratified: a class with very few videos may have none in test.

Labels: 0-based index in the sorted class names (layouts 2-3, and 1 with names). Only split 1
exists. Video extensions: see ``EXTS``.
"""
from __future__ import annotations

import csv
import hashlib
from pathlib import Path

from motionclr.datasets.sources.base import VideoEntry, check_missing, resolve_inside

SPLITS = (1,)
EXTS = {".avi", ".mp4", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv"}
TEST_FRACTION = 0.3
_SUBSETS = {"train": "train", "test": "test", "val": "val", "validation": "val",
            "valid": "val", "unused": "unused"}


def hash_subset(key: str, test_fraction: float) -> str:
    """"test" for a stable ``test_fraction`` of keys (sha1, not Python's salted hash())."""
    u = int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "big") / 2 ** 64
    return "test" if u < test_fraction else "train"


def _videos(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.suffix.lower() in EXTS and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(d).parts))


def _class_dirs(d: Path) -> list[Path]:
    return sorted(c for c in d.iterdir() if c.is_dir() and not c.name.startswith("."))


def _entry(base: Path, path: Path, label: int, name: str, subset: str,
           group: str | None = None) -> VideoEntry:
    return VideoEntry(path=path, video_id=path.relative_to(base).with_suffix("").as_posix(),
                      label=label, label_name=name, subset=subset, group=group)


def _from_table(table: Path, test_fraction: float) -> list[VideoEntry]:
    base = table.parent
    with open(table, newline="") as fh:
        rows = [r for r in csv.reader(fh, delimiter="\t" if table.suffix == ".tsv" else ",")
                if r and any(c.strip() for c in r)]
    cols = ["path", "label", "split", "group"]
    if rows and rows[0][0].strip().lower() == "path":
        cols = [c.strip().lower() for c in rows.pop(0)]
        if "label" not in cols:
            raise ValueError(f"{table}: header needs path and label columns, got {cols}")
    rows = [dict(zip(cols, (c.strip() for c in r))) for r in rows]
    if not rows:
        raise ValueError(f"{table} lists no videos")
    names = [r.get("label") or "" for r in rows]
    numeric = all(n.lstrip("-").isdigit() for n in names)
    index = {n: i for i, n in enumerate(sorted(set(names)))}
    entries = []
    for r in rows:
        if not r.get("path") or not r.get("label"):
            raise ValueError(f"{table}: every row needs a path and a label, got {r}")
        split = r.get("split", "").lower()
        if split and split not in _SUBSETS:
            raise ValueError(f"{table}: {r['path']} has split {split!r}; valid: {sorted(_SUBSETS)}")
        group = r.get("group") or None
        subset = _SUBSETS[split] if split else hash_subset(group or r["path"], test_fraction)
        label = int(r["label"]) if numeric else index[r["label"]]
        entries.append(_entry(base, resolve_inside(base, r["path"]), label, r["label"], subset,
                              group))
    return entries


def _from_dirs(root: Path, test_fraction: float) -> list[VideoEntry]:
    split_dirs = [(s, root / s) for s in ("train", "val", "test") if (root / s).is_dir()]
    if not ((root / "train").is_dir() and len(split_dirs) > 1):
        split_dirs = [(None, root)]  # layout 3: class folders directly under the root
    classes = {n: i for i, n in enumerate(sorted(
        {c.name for _, d in split_dirs for c in _class_dirs(d)}))}
    entries = []
    for subset, d in split_dirs:
        for c in _class_dirs(d):
            for v in _videos(c):
                rel = v.relative_to(root).as_posix()
                entries.append(_entry(root, v, classes[c.name], c.name,
                                      subset or hash_subset(rel, test_fraction)))
    if not entries:
        raise FileNotFoundError(
            f"no videos under {root}: expected <root>/<class>/<video> (or "
            f"<root>/train/<class>/<video> with test/ or val/) with extensions "
            f"{sorted(EXTS)}, or an annotations.csv of path,label,split")
    return entries


def list_videos(root: str | Path, split: int = 1, check_files: bool = True,
                test_fraction: float = TEST_FRACTION) -> list[VideoEntry]:
    """The videos of the first layout that applies (see the module docstring)."""
    if split not in SPLITS:
        raise ValueError(f"folder datasets have one split; valid: {list(SPLITS)}, got {split}")
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction}")
    root = Path(root)
    tables = [root] if root.suffix in (".csv", ".tsv") else [
        root / "annotations.csv", root / "annotations.tsv"]
    table = next((t for t in tables if t.is_file()), None)
    if table is not None:
        entries = _from_table(table, test_fraction)
        where = table.parent
    elif not root.is_dir():
        raise FileNotFoundError(f"dataset root {root} does not exist (expected a folder of "
                                "<class>/<video> or an annotations.csv)")
    else:
        entries, where = _from_dirs(root, test_fraction), root
    if check_files:
        check_missing(entries, "folder", where)
    return entries
