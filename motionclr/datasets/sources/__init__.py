"""Dataset sources: each lists videos, 0-based labels and split membership.

``SOURCES[name](root, split)`` -> list of ``VideoEntry``. The embedded datasets
(``synthetic``: camera motion, ``synthetic-objects``: object motion) are written in the UCF101
layout, so they are read by the UCF101 source: the demo runs the real code path.
"""
from __future__ import annotations

from pathlib import Path

from motionclr.datasets.sources import folder, hmdb51, kinetics, ssv2, ucf101
from motionclr.datasets.sources.base import VideoEntry, refuse_escapes

SOURCES = {
    "ucf101": ucf101.list_videos,
    "synthetic": ucf101.list_videos,
    "synthetic-objects": ucf101.list_videos,
    "hmdb51": hmdb51.list_videos,
    "kinetics400": kinetics.list_videos,
    "ssv2": ssv2.list_videos,
    "folder": folder.list_videos,
}


def list_videos(dataset: str, root, split: int = 1, **options) -> list[VideoEntry]:
    """``options`` are the source's own keyword arguments (``data.options`` in configs),
    e.g. ``test_fraction`` for ``folder``. A listed video reached through a symlink that
    leads out of ``root`` is refused, like a ``../`` path."""
    if dataset not in SOURCES:
        raise ValueError(f"unknown dataset {dataset!r}; valid: {sorted(SOURCES)}")
    try:
        entries = SOURCES[dataset](root, split, **options)
    except TypeError as e:
        if "unexpected keyword" in str(e):
            raise ValueError(f"data.options for {dataset}: {e}") from None
        raise
    base = Path(root)
    refuse_escapes(base.parent if base.is_file() else base, [e.path for e in entries])
    return entries


def limit_entries(entries: list[VideoEntry], limit: int) -> list[VideoEntry]:
    """``data.limit``: whole classes, in label order, until at least ``limit`` videos.

    Every kept class keeps all its videos, train and test, so a smoke run still has both
    subsets and labels 0..k-1 (the first N of the list were often one subset and a cut
    class). Unlabelled videos (label -1) are dropped unless nothing is labelled, when the
    first ``limit`` are kept. ``limit`` <= 0 keeps everything; the list's order is kept.
    """
    if limit <= 0:
        return list(entries)
    labels = sorted({e.label for e in entries if e.label >= 0})
    if not labels:
        return list(entries[:limit])
    counts = {lab: 0 for lab in labels}
    for e in entries:
        if e.label >= 0:
            counts[e.label] += 1
    keep, n = set(), 0
    for lab in labels:
        if n >= limit:
            break
        keep.add(lab)
        n += counts[lab]
    return [e for e in entries if e.label in keep]


__all__ = ["SOURCES", "VideoEntry", "list_videos", "limit_entries"]
