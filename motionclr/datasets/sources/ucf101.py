"""UCF101 in its official layout.

Videos: ``<root>/<Class>/v_<Class>_gXX_cYY.avi`` (or under ``<root>/UCF101/``).
Splits: ``ucfTrainTestlist/classInd.txt`` (``<1-based id> <Class>``), ``trainlistNN.txt``
(``<Class>/<file>.avi <1-based label>``) and ``testlistNN.txt`` (no label column).
Labels are 0-based internally (classInd id - 1); the class name is kept.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from motionclr.datasets.sources.base import VideoEntry, check_missing, resolve_inside

_GROUP = re.compile(r"_g(\d+)_c\d+", re.IGNORECASE)


def find_layout(root: Path) -> tuple[Path, Path]:
    """(video root, split-file dir); raises with what is missing when the root is wrong."""
    root = Path(root)
    tried = []
    video_root = root / "UCF101" if (root / "UCF101").is_dir() else root
    for split_dir in (video_root / "ucfTrainTestlist", root / "ucfTrainTestlist"):
        tried.append(str(split_dir / "classInd.txt"))
        if (split_dir / "classInd.txt").is_file():
            return video_root, split_dir
    raise FileNotFoundError(
        f"no UCF101 split files under {root}: looked for {', '.join(dict.fromkeys(tried))}. "
        "Expected the official layout <root>/<Class>/v_<Class>_gXX_cYY.avi with "
        "<root>/ucfTrainTestlist/{classInd,trainlist01,testlist01}.txt")


def read_class_index(path: Path) -> list[str]:
    names: dict[int, str] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            idx, name = line.split()
            names[int(idx) - 1] = name  # 1-based on disk, 0-based here
    if sorted(names) != list(range(len(names))):
        raise ValueError(f"{path}: class ids are not 1..N")
    return [names[i] for i in range(len(names))]


def list_videos(root: str | Path, split: int = 1, check_files: bool = True) -> list[VideoEntry]:
    """Every video of the split's train and test lists, train first, in file order."""
    if split not in (1, 2, 3):
        raise ValueError(f"UCF101 split must be 1, 2 or 3, got {split}")
    video_root, split_dir = find_layout(Path(root))
    classes = read_class_index(split_dir / "classInd.txt")
    by_lower = {c.lower(): i for i, c in enumerate(classes)}
    entries = []
    for subset, fname in (("train", f"trainlist0{split}.txt"), ("test", f"testlist0{split}.txt")):
        f = split_dir / fname
        if not f.is_file():
            raise FileNotFoundError(f"missing split file {f}")
        for line in f.read_text().splitlines():
            parts = line.split()
            if not parts:
                continue
            rel = parts[0]
            cls = rel.split("/")[0]
            if cls.lower() not in by_lower:
                raise ValueError(f"{f}: class {cls!r} is not in classInd.txt")
            label = by_lower[cls.lower()]
            if len(parts) > 1 and int(parts[1]) - 1 != label:
                raise ValueError(f"{f}: {rel} has label {parts[1]} but classInd says {label + 1}")
            path = resolve_inside(video_root, rel)
            g = _GROUP.search(rel)
            entries.append(VideoEntry(path=path, video_id=str(Path(rel).with_suffix("")),
                                      label=label, label_name=classes[label], subset=subset,
                                      group=f"{classes[label]}_g{g.group(1)}" if g else None))
    leaks = check_group_leakage(entries)
    if leaks:  # clips of one source video on both sides inflate every test number
        raise ValueError(f"split {split}: {len(leaks)} source groups are in both train and "
                         f"test (e.g. {', '.join(leaks[:3])}); the split files are not the "
                         "official ones")
    if check_files:
        check_missing(entries, "ucf101", video_root, "<Class>/v_<Class>_gXX_cYY.avi")
    return entries


def group_number(video_id: str) -> int | None:
    """The ``gXX`` of a UCF101-layout id (``<Class>/v_<Class>_gXX_cYY``), None without one.
    The same number in two classes is two unrelated source videos; split 1's test set is
    numbers 1-7 of every class."""
    g = _GROUP.search(str(video_id))
    return int(g.group(1)) if g else None


def group_numbers(video_ids) -> np.ndarray | None:
    """(N,) ``group_number`` of every id, or None when any id has no group (its source
    video is then unknown)."""
    nums = [group_number(v) for v in video_ids]
    return None if None in nums else np.asarray(nums, np.int64)


def check_group_leakage(entries: list[VideoEntry]) -> list[str]:
    """Groups (same source video) that appear in both train and test; should be empty."""
    train = {e.group for e in entries if e.subset == "train" and e.group}
    test = {e.group for e in entries if e.subset == "test" and e.group}
    return sorted(train & test)
