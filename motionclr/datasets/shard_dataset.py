"""Map-style dataset of clips read from the flow stage's HDF5 shards.

Samples are dicts of uint8 arrays, ``rgb (V, 3, T, S, S)`` and ``flow (V, 2, T, S, S)`` for
V clips (views) per video, plus ``label``, ``video_id``, ``index`` and ``starts``. They stay
uint8 through the DataLoader (4x fewer bytes through shared memory than float); conversion
and augmentation run batched on the training device (``motionclr.datasets.transforms``).

HDF5 handles are opened lazily in each worker (h5py handles must not cross a fork), and a
clip is read as one contiguous time range then subsampled in numpy: h5py's strided slicing
on chunked data is ~200x slower.
"""
from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
from torch.utils.data import Dataset

from motionclr.datasets.samplers import RandomClip
from motionclr.pipeline.shards import load_manifest


def select_videos(manifest: dict, subset: str | None, split: int = 1) -> list[dict]:
    """Videos of ``subset`` ("train"/"test"/...) in ``split``; all videos when subset is None."""
    if subset is None:
        return list(manifest["videos"])
    out = [v for v in manifest["videos"] if v["splits"].get(str(split)) == subset]
    if not out:
        have = sorted({v["splits"][str(split)] for v in manifest["videos"]
                       if str(split) in v["splits"]})
        raise ValueError(f"no {subset!r} videos in split {split}; this cache has: {have}")
    return out


class ShardClipDataset(Dataset):
    """Clips of the videos in one flow-stage directory.

    Args:
        stage_dir: a finished flow stage (``manifest.json`` + shards).
        subset: "train", "test", ... of ``split``; None for every video.
        sampler: maps ``n_frames`` to a list of clips (``motionclr.datasets.samplers``).
        window: square spatial window S cut in the worker (random position when
            ``train``, centred otherwise); 0 keeps full frames (all videos must match).
        modalities: which of "rgb", "flow" to read.
        index: optional ``video_id -> dict`` of per-video motion-index arrays for samplers.
        seed: clips of (seed, epoch, index) are deterministic, so a resumed run replays.
    """

    def __init__(self, stage_dir, subset: str | None = "train", split: int = 1,
                 sampler=None, window: int = 0, train: bool = True,
                 modalities=("rgb", "flow"), index: dict | None = None, seed: int = 0):
        self.stage_dir = Path(stage_dir)
        manifest = load_manifest(self.stage_dir)
        self.videos = select_videos(manifest, subset, split)
        self.classes = manifest["classes"]
        self.bound = float(manifest["bound"])
        self.sampler = sampler or RandomClip()
        self.window, self.train = window, train
        self.modalities = tuple(modalities)
        self.index, self.seed, self.epoch = index, seed, 0
        self._files: dict[str, h5py.File] = {}
        self._pid = None

    def __len__(self) -> int:
        return len(self.videos)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _group(self, v: dict):
        if self._pid != os.getpid():  # first use in this process (or after a fork)
            self._files, self._pid = {}, os.getpid()
        f = self._files.get(v["shard"])
        if f is None:
            f = self._files[v["shard"]] = h5py.File(self.stage_dir / v["shard"], "r")
        return f["videos"][v["video_id"]]

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_files"], state["_pid"] = {}, None  # never ship open handles to workers
        return state

    def _window(self, h: int, w: int, rng) -> tuple[slice, slice]:
        s = self.window
        if s <= 0 or (s >= h and s >= w):
            return slice(None), slice(None)
        s_h, s_w = min(s, h), min(s, w)
        if self.train:
            y, x = int(rng.integers(0, h - s_h + 1)), int(rng.integers(0, w - s_w + 1))
        else:
            y, x = (h - s_h) // 2, (w - s_w) // 2
        return slice(y, y + s_h), slice(x, x + s_w)

    @staticmethod
    def read_clip(ds, idx: np.ndarray, ys: slice, xs: slice) -> np.ndarray:
        """Frames ``idx`` of ``ds`` in one contiguous read, subsampled in numpy."""
        lo, hi = int(idx.min()), int(idx.max())
        return ds[lo:hi + 1, ys, xs][idx - lo]

    def __getitem__(self, i: int) -> dict:
        v = self.videos[i]
        rng = np.random.default_rng([self.seed, self.epoch, i])
        info = self.index.get(v["video_id"]) if self.index else None
        clips = self.sampler(v["n_frames"], rng if self.train else None, info)
        g = self._group(v)
        out = {"label": v["label"], "video_id": v["video_id"], "index": i,
               "starts": np.array([int(c[0]) for c in clips])}
        ys, xs = self._window(v["height"], v["width"], rng)
        if "rgb" in self.modalities:
            # (V, T, H, W, 3) -> (V, 3, T, H, W)
            rgb = np.stack([self.read_clip(g["rgb"], c, ys, xs) for c in clips])
            out["rgb"] = np.ascontiguousarray(rgb.transpose(0, 4, 1, 2, 3))
        if info is not None and "mcl_map" in info:
            # Coarse motion map of each clip (MCL's tubelet crop); whole-frame coordinates.
            from motionclr.pipeline.motion_index import clip_motion_map
            out["motion_map"] = np.stack([clip_motion_map(info["mcl_map"], c)
                                          for c in clips]).astype(np.float32)
        if "flow" in self.modalities:
            n_flow = v["n_frames"] - 1
            flow = np.stack([self.read_clip(g["flow"], np.minimum(c, n_flow - 1), ys, xs)
                             for c in clips])
            out["flow"] = np.ascontiguousarray(flow.transpose(0, 4, 1, 2, 3))
        return out
