"""Something-Something v2 in its official layout.

Labels: ``labels.json`` = ``{"<template without brackets>": "<0-based id>"}``; splits
``train.json`` / ``validation.json`` = ``[{"id", "label", "template", "placeholders"}]`` and
``test.json`` = ``[{"id"}]`` (label -1, or read from ``test-answers.csv`` = ``<id>;<class>``
when present). The files live in ``<root>/labels/``, ``<root>/annotations/`` or ``<root>/``;
the older ``something-something-v2-<name>.json`` names are accepted too.
Videos: ``<root>/20bn-something-something-v2/<id>.webm`` (or ``<root>/videos/<id>.webm``).
Class of a video = its ``template`` with ``[`` and ``]`` removed ("Pushing [something] from
left to right" -> "Pushing something from left to right"), looked up exactly in labels.json,
as the official loaders do. (``label`` is the filled-in sentence, not the class.)
Subsets: "train", "val", "test". Only split 1 exists.

Direction matters: "from left to right" and "from right to left" are different classes, so a
horizontal flip changes the label. Use ``FLIP_POLICY`` (``data.flip=off``) for SSv2.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from motionclr.datasets.sources.base import VideoEntry, check_missing, resolve_inside

FLIP_POLICY = "off"
SPLITS = (1,)
VIDEO_DIRS = ("20bn-something-something-v2", "videos")
_FILES = {"labels": "labels", "train": "train", "val": "validation", "test": "test"}


def _find(root: Path, name: str) -> Path | None:
    for d in (root / "labels", root / "annotations", root):
        for n in (f"{name}.json", f"something-something-v2-{name}.json"):
            if (d / n).is_file():
                return d / n
    return None


def find_layout(root: Path) -> tuple[Path, dict[str, Path]]:
    """(video dir, {labels/train/val/test: json}); raises listing what is missing."""
    files = {k: _find(root, n) for k, n in _FILES.items()}
    if files["labels"] is None or not any(files[s] for s in ("train", "val", "test")):
        lacking = [f"{n}.json" for k, n in _FILES.items() if files[k] is None]
        raise FileNotFoundError(
            f"SSv2 annotations not found under {root}: missing {', '.join(lacking)} (looked "
            f"in labels/, annotations/ and the root). Expected <root>/labels/{{labels,train,"
            f"validation,test}}.json and <root>/{VIDEO_DIRS[0]}/<id>.webm")
    video_dir = next((root / d for d in VIDEO_DIRS if (root / d).is_dir()), root / VIDEO_DIRS[0])
    return video_dir, {k: f for k, f in files.items() if f is not None}


def read_labels(path: Path) -> list[str]:
    names = {int(i): t for t, i in json.loads(path.read_text()).items()}
    if sorted(names) != list(range(len(names))):
        raise ValueError(f"{path}: class ids are not 0..N-1")
    return [names[i] for i in range(len(names))]


def _test_answers(labels_file: Path) -> dict[str, str]:
    f = labels_file.parent / "test-answers.csv"
    if not f.is_file():
        return {}
    with open(f, newline="") as fh:
        return {row[0].strip(): row[1].strip().replace("[", "").replace("]", "")
                for row in csv.reader(fh, delimiter=";") if len(row) >= 2}


def list_videos(root: str | Path, split: int = 1, check_files: bool = True) -> list[VideoEntry]:
    """Every video of train, then validation, then test, in file order."""
    if split not in SPLITS:
        raise ValueError(f"SSv2 has one split; valid: {list(SPLITS)}, got {split}")
    root = Path(root)
    video_dir, files = find_layout(root)
    classes = read_labels(files["labels"])
    index = {c: i for i, c in enumerate(classes)}
    answers = _test_answers(files["labels"])
    entries = []
    for subset in ("train", "val", "test"):
        if subset not in files:
            continue
        for item in json.loads(files[subset].read_text()):
            vid = str(item["id"])
            if "template" in item:
                name = item["template"].replace("[", "").replace("]", "")
            else:
                name = answers.get(vid, "")
            if name and name not in index:
                raise ValueError(f"{files[subset].name}: video {vid} has class {name!r}, "
                                 f"which is not in {files['labels'].name}")
            path = resolve_inside(video_dir, f"{vid}.webm")
            entries.append(VideoEntry(path=path,
                                      video_id=path.relative_to(root).with_suffix("").as_posix(),
                                      label=index.get(name, -1), label_name=name, subset=subset))
    if check_files:
        check_missing(entries, "ssv2", video_dir, "<id>.webm")
    return entries
