"""Map-style dataset of clips read from the flow stage's HDF5 shards.

Samples are dicts of uint8 arrays in the stored, channel-last layout: ``rgb (V, T, H, W, 3)``
and ``flow (V, T, H, W, 2)`` for V clips (views) per video, plus ``label``, ``video_id``,
``index`` and ``starts``. They stay uint8 through the DataLoader (4x fewer bytes through
shared memory than float) and channel-last (a numpy transpose in the worker costs more
than the read itself); ``batch_to_device`` moves a batch and permutes it to
``(B, V, C, T, H, W)``, and augmentation runs batched on the device.

Frames are read with ``FrameReader`` (``preadv`` of exactly the clip's frames; h5py only
for metadata), handles are opened lazily in each worker (they must not cross a fork), and
a batch fetched through ``__getitems__`` asks the kernel for every clip's bytes before
reading any, so cold reads keep many requests in flight. With ``direct``, every clip is
read past the page cache instead (``O_DIRECT``, from ``io_depth`` threads): for stages far
larger than memory (``direct_for``). Every frame is checked against
the checksum recorded at packing on its first read in the process and after any change to
its shard file (``FrameReader``): a damaged shard raises ``DamagedShardError`` (naming the
shard and video, and ``motionclr verify --repair``), it is never trained on.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from motionclr.datasets.samplers import RandomClip, clip_motion_map
from motionclr.storage import FrameReader, FrameSums, load_manifest

CHANNEL_LAST = ("rgb", "flow")


def batch_to_device(batch: dict, device) -> dict:
    """Move a collated batch to ``device``; ``rgb``/``flow`` become ``(B, V, C, T, H, W)``."""
    out = {}
    for k, v in batch.items():
        if torch.is_tensor(v):
            v = v.to(device, non_blocking=True)
            if k in CHANNEL_LAST:  # (B, V, T, H, W, C) -> (B, V, C, T, H, W), on the device
                v = v.permute(0, 1, 5, 2, 3, 4)
        out[k] = v
    return out


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
            ``train``, centred otherwise); 0 keeps full frames (the fast path). None
            (default): full frames when every video has the same size, else a window of
            the smallest short side, so that clips of different videos can be batched.
        modalities: which of "rgb", "flow" to read.
        index: optional ``video_id -> dict`` of per-video motion-index arrays for samplers.
        seed: clips of (seed, epoch, index) are deterministic, so a resumed run replays.
        check: verify every frame read against its recorded checksum (``bench io``
            measures the cost; off only to measure it).
        direct: read every clip with ``O_DIRECT`` (``FrameReader.read``), ``io_depth`` at
            a time, instead of through the page cache; ``direct_for`` decides it from the
            stage's size.
    """

    def __init__(self, stage_dir, subset: str | None = "train", split: int = 1,
                 sampler=None, window: int | None = None, train: bool = True,
                 modalities=("rgb", "flow"), index: dict | None = None, seed: int = 0,
                 check: bool = True, direct: bool = False, io_depth: int = 4):
        self.stage_dir = Path(stage_dir)
        manifest = load_manifest(self.stage_dir)
        self.videos = select_videos(manifest, subset, split)
        self._known = self._layouts(manifest)
        self._sums = FrameSums(self.stage_dir, manifest) if check else None
        self.classes = manifest["classes"]
        self.bound = float(manifest["bound"])
        self.sampler = sampler or RandomClip()
        if window is None:
            window = 0 if self.uniform_size(self.videos) else \
                min(min(v["height"], v["width"]) for v in self.videos)
        self.window, self.train = window, train
        self.modalities = tuple(modalities)
        self.index, self.seed, self.epoch = index, seed, 0
        self.direct, self.io_depth = bool(direct), max(1, int(io_depth))
        self._files: dict[str, tuple[h5py.File, FrameReader]] = {}
        self._pid, self._pool = None, None

    @staticmethod
    def _layouts(manifest: dict) -> dict[str, dict]:
        """shard -> {(video_id, modality): chunk table} from the manifest (if recorded)."""
        out: dict[str, dict] = {}
        for v in manifest["videos"]:
            for m, (chunk, offsets) in v.get("layout", {}).items():
                shape = (v["height"], v["width"], 3 if m == "rgb" else 2)
                out.setdefault(v["shard"], {})[(v["video_id"], m)] = (chunk, offsets, shape,
                                                                       "uint8")
        return out

    def shard_paths(self) -> list[Path]:
        """The shard files this dataset's videos live in."""
        return [self.stage_dir / s for s in sorted({v["shard"] for v in self.videos})]

    @staticmethod
    def uniform_size(videos: list[dict]) -> bool:
        return len({(v["height"], v["width"]) for v in videos}) <= 1

    def __len__(self) -> int:
        return len(self.videos)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _shard(self, name: str) -> tuple[h5py.File, FrameReader]:
        if self._pid != os.getpid():  # first use in this process (or after a fork)
            self._files, self._pid, self._pool = {}, os.getpid(), None
        if name not in self._files:
            self._files[name] = (h5py.File(self.stage_dir / name, "r"),
                                 FrameReader(self.stage_dir / name, self._known.get(name),
                                             sums=self._sums))
        return self._files[name]

    def __getstate__(self):
        state = self.__dict__.copy()
        # never ship open handles or threads to workers
        state["_files"], state["_pid"], state["_pool"] = {}, None, None
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

    def plan(self, i) -> dict:
        """What item ``i`` reads (clips, window, requests), drawn for (seed, epoch, i).

        ``i`` may be ``(epoch, i)``: the epoch then travels with the index (an
        ``epoch_tagged`` ``TrainShardSampler``), so persistent DataLoader workers, whose
        copy of ``self.epoch`` never changes, still draw each epoch's clips."""
        epoch = self.epoch
        if isinstance(i, (tuple, list)):
            epoch, i = i
        v = self.videos[i]
        rng = np.random.default_rng([self.seed, epoch, i])
        info = self.index.get(v["video_id"]) if self.index else None
        clips = self.sampler(v["n_frames"], rng if self.train else None, info)
        f, reader = self._shard(v["shard"])
        vid = v["video_id"]
        reqs = {}
        for m in self.modalities:
            idx = [np.minimum(c, v["n_frames"] - 2) if m == "flow" else c for c in clips]
            reqs[m] = [((vid, m), np.asarray(ix, np.int64),
                        lambda m=m: f["videos"][vid][m]) for ix in idx]
        return {"i": i, "video": v, "clips": clips, "info": info, "reader": reader,
                "reqs": reqs, "window": self._window(v["height"], v["width"], rng)}

    def read(self, p: dict, cached_only: bool = False, direct: bool = False) -> dict | None:
        """The sample of plan ``p``. ``cached_only``: None unless every byte it needs is in
        the page cache already (``FrameReader.read``), without waiting for the disk.
        ``direct``: read it with ``O_DIRECT``, past the page cache."""
        v, clips, (ys, xs) = p["video"], p["clips"], p["window"]
        out = {"label": v["label"], "video_id": v["video_id"], "index": p["i"],
               "starts": np.array([int(c[0]) for c in clips])}
        if p["info"] is not None and "mcl_map" in p["info"]:
            # Coarse motion map of each clip (MCL's tubelet crop); whole-frame coordinates.
            out["motion_map"] = np.stack([clip_motion_map(p["info"]["mcl_map"], c)
                                          for c in clips]).astype(np.float32)
        for m, reqs in p["reqs"].items():
            channels = 3 if m == "rgb" else 2
            full = np.empty((len(clips), len(clips[0]), v["height"], v["width"], channels),
                            np.uint8)
            for k, r in enumerate(reqs):
                if p["reader"].read(*r, out=full[k], cached_only=cached_only,
                                    direct=direct) is None:
                    return None
            # A window is one strided copy; full frames need none.
            out[m] = full if ys == slice(None) and xs == slice(None) else \
                np.ascontiguousarray(full[:, :, ys, xs])
        return out

    def __getitem__(self, i: int) -> dict:
        return self.read(self.plan(i), direct=self.direct)

    @staticmethod
    def advise(p: dict) -> None:
        """Ask the kernel to start reading plan ``p``'s bytes (``FrameReader.advise``)."""
        for reqs in p["reqs"].values():
            for r in reqs:
                p["reader"].advise(*r)

    def __getitems__(self, indices: list[int]) -> list[dict]:
        """A batch (DataLoader calls this). Clips already in the page cache are read at
        once; the bytes of all the others are hinted before any of them is read, so the
        disk has them in flight together. (Hinting cached clips too cost two
        ``posix_fadvise`` calls per clip for nothing: ~13 % of a warm read.)"""
        return self.read_many([self.plan(i) for i in indices])

    def read_many(self, plans: list[dict]) -> list[dict]:
        """The samples of ``plans``, read as ``__getitems__`` describes; with ``direct``,
        all of them with ``O_DIRECT``, ``io_depth`` at a time."""
        if self.direct:
            return self._read_direct(plans)
        out = [self.read(p, cached_only=True) for p in plans]
        todo = [j for j, s in enumerate(out) if s is None]
        for j in todo:
            self.advise(plans[j])
        for j in todo:
            out[j] = self.read(plans[j])
        return out

    def _read_direct(self, plans: list[dict]) -> list[dict]:
        """Every plan read with ``O_DIRECT``, from ``io_depth`` threads (``os.preadv`` and
        the checksum's sum release the GIL), so that many requests are in flight.

        There is no "is it cached?" probe first: ``RWF_NOWAIT`` on a clip that is not
        cached starts the kernel's read-ahead of it before it says no, and that buffered
        read then raced the ``O_DIRECT`` one for the disk (measured: half the rate). A
        direct stage is one much larger than memory, whose clips are rarely cached."""
        if self.io_depth == 1 or len(plans) == 1:
            return [self.read(p, direct=True) for p in plans]
        for p in plans:  # descriptors opened here, not raced for by the threads
            p["reader"].direct_fd()
        if self._pool is None:  # threads are per process, like the handles
            self._pool = ThreadPoolExecutor(self.io_depth, "shard-read")
        return list(self._pool.map(lambda p: self.read(p, direct=True), plans))
