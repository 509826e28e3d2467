"""HMDB51 in its official layout.

Videos: ``<root>/<Class>/<video>.avi`` (or under ``<root>/videos/`` or ``<root>/hmdb51/``).
Splits: ``testTrainMulti_7030_splits/<Class>_test_split{1,2,3}.txt`` (in the root or the video
folder), one line per video of that class: ``<video>.avi <flag>`` with **1 = train, 2 = test,
0 = unused** in that split. Unused videos are kept with subset ``"unused"`` so a manifest
records every video's membership in all three splits.
Labels: 0-based index of the class in the sorted split-file class names (the same order as
mmaction2's sorted ``videos/`` folders); the class name is kept.
"""
from __future__ import annotations

from pathlib import Path

from motionclr.datasets.sources.base import VideoEntry, check_missing, resolve_inside

SPLITS = (1, 2, 3)
SPLIT_DIR = "testTrainMulti_7030_splits"
_SUBSET = {"1": "train", "2": "test", "0": "unused"}
_ORDER = ("train", "test", "unused")


def find_layout(root: Path) -> tuple[Path, Path]:
    """(video root, split-file dir); raises with what is missing when the root is wrong."""
    root = Path(root)
    video_root = next((root / s for s in ("videos", "hmdb51") if (root / s).is_dir()), root)
    tried = []
    for split_dir in (root / SPLIT_DIR, video_root / SPLIT_DIR):
        tried.append(str(split_dir))
        if any(split_dir.glob("*_test_split1.txt")):
            return video_root, split_dir
    raise FileNotFoundError(
        f"no HMDB51 split files under {root}: looked for <Class>_test_split1.txt in "
        f"{', '.join(dict.fromkeys(tried))}. Expected the official layout "
        f"<root>/<Class>/<video>.avi with <root>/{SPLIT_DIR}/<Class>_test_split{{1,2,3}}.txt "
        "(unpack test_train_splits.rar there)")


def list_videos(root: str | Path, split: int = 1, check_files: bool = True) -> list[VideoEntry]:
    """Every video named in the split's files: train, then test, then unused."""
    if split not in SPLITS:
        raise ValueError(f"HMDB51 split must be one of {list(SPLITS)}, got {split}")
    video_root, split_dir = find_layout(Path(root))
    suffix = f"_test_split{split}.txt"
    files = {f.name[:-len(suffix)]: f for f in split_dir.glob(f"*{suffix}")}
    if not files:
        raise FileNotFoundError(f"no *{suffix} files in {split_dir}")
    classes = sorted(files)
    entries: list[VideoEntry] = []
    for label, cls in enumerate(classes):
        for line in files[cls].read_text().splitlines():
            if not line.strip():
                continue
            # rsplit: the flag is the last token; the official lines end with a space.
            name, flag = line.strip().rsplit(maxsplit=1)
            if flag not in _SUBSET:
                raise ValueError(f"{files[cls]}: {name} has flag {flag!r}; expected 0, 1 or 2")
            rel = f"{cls}/{name}"
            entries.append(VideoEntry(path=resolve_inside(video_root, rel),
                                      video_id=str(Path(rel).with_suffix("")), label=label,
                                      label_name=cls, subset=_SUBSET[flag]))
    entries.sort(key=lambda e: _ORDER.index(e.subset))  # stable: class/file order kept
    if check_files:
        check_missing(entries, "hmdb51", video_root, "<Class>/<video>.avi")
    return entries
