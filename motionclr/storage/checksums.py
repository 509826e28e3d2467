"""Per-frame checksums of a packed stage, checked when frames are read.

Each frame of each modality gets one 64-bit checksum when it is packed: the sum of the
frame's bytes read as little-endian uint64 words (zero-padded), modulo 2**64. Any change
confined to one 8-byte word (a flipped bit, a changed byte, a zeroed word) changes the sum;
changes in several words go unnoticed only if they cancel exactly. It is the cheapest
check that still covers every byte: a warm clip read is a memcpy from the page cache, and
zlib.crc32 costs several times that read (docs/benchmarks.md, io section). The strong
check stays ``motionclr verify`` (blake2b of whole videos).

The checksums of a stage live in one ``checksums-<digest>.npy`` (uint64) beside the
shards, named by the manifest (``checksums``: file and blake2b) with each video's first
index (``checksum_at``: rgb frames at ``[at, at + n)``, flow at ``[at + n, at + 2n - 1)``).
Its name carries its digest, so a rewrite (``verify --repair``) never changes a file that
a manifest already names. Readers memory-map it, per process. ``FrameReader`` sums a frame
on its first read in a process and again after any change to the shard file.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from motionclr.atomic import atomic_write
from motionclr.errors import UserError

ALGORITHM = "sum64"


class DamagedShardError(UserError):
    """Bytes of a shard differ from what was packed: never train or evaluate on them."""


_torch = None  # the module once imported; False: not installed


def _word_sums(words: np.ndarray) -> np.ndarray:
    """``(T, W)`` uint64 -> ``(T,)`` row sums modulo 2**64.

    torch's int64 sum is the same bits (two's complement wraps exactly as uint64 does) and
    about 1.6x numpy's uint64 reduction here (its CPU kernels are vectorised with AVX2 where
    numpy's integer add is not): the check is one pass over every byte a clip read copies,
    so its speed is the cost of checking (docs/benchmarks.md, io section). numpy when torch
    is absent (the sums are identical; tests/test_storage_checksums.py)."""
    global _torch
    if _torch is None:
        try:
            import torch as _torch
        except ImportError:  # the storage layer does not need torch to read or write
            _torch = False
    if _torch is False:
        return words.sum(axis=1, dtype=np.uint64)
    return _torch.from_numpy(words.view(np.int64)).sum(dim=1).numpy().view(np.uint64)


def frame_sums(frames: np.ndarray) -> np.ndarray:
    """``(T, ...)`` frames -> ``(T,)`` uint64: each frame's bytes as uint64 words, summed."""
    if frames.flags.c_contiguous and frames.dtype == np.uint8 and \
            (frames.size // max(len(frames), 1)) % 8 == 0 and frames.size:
        # The reader's case (whole words per frame): one reduction, nothing else.
        return _word_sums(frames.reshape(len(frames), -1).view(np.uint64))
    a = np.ascontiguousarray(frames).reshape(len(frames), -1)
    if a.dtype != np.uint8:
        a = a.view(np.uint8)
    whole = a.shape[1] // 8 * 8
    out = _word_sums(np.ascontiguousarray(a[:, :whole]).view(np.uint64)) if whole else \
        np.zeros(len(a), np.uint64)
    if whole < a.shape[1]:  # the zero-padded last word, little-endian
        tail = a[:, whole:].astype(np.uint64) << (np.arange(a.shape[1] - whole,
                                                            dtype=np.uint64) * np.uint64(8))
        out += tail.sum(axis=1, dtype=np.uint64)
    return out


def damaged_message(shard: Path, videos: list[str]) -> str:
    shard = Path(shard)
    return (f"{shard}: video(s) {', '.join(videos)} do not match the checksums recorded when "
            f"they were packed (the shard is damaged); run `motionclr verify --repair "
            f"{shard.parent}` to recompute exactly those videos")


def check_frames(shard: Path, video_id: str, modality: str, idx: np.ndarray,
                 frames: np.ndarray, expected: np.ndarray) -> None:
    """Raise ``DamagedShardError`` unless ``frames`` (frames ``idx``) match ``expected``."""
    got = frame_sums(frames)
    want = expected[idx]
    if not (got == want).all():
        bad = np.asarray(idx)[got != want].tolist()
        raise DamagedShardError(damaged_message(shard, [video_id]) +
                                f" ({modality} frames {bad[:8]}{' ...' if len(bad) > 8 else ''})")


def write_checksums(stage_dir: Path, videos: list[dict], sums: dict) -> dict:
    """Write every video's checksums (``sums``: video_id -> {"rgb", "flow"} arrays) into
    one content-named file; sets ``checksum_at`` on each record; returns the manifest's
    ``checksums`` entry."""
    parts, at = [], 0
    for v in videos:
        s = sums[v["video_id"]]
        v["checksum_at"] = at
        parts += [s["rgb"], s["flow"]]
        at += len(s["rgb"]) + len(s["flow"])
    arr = np.concatenate(parts).astype("<u8") if parts else np.zeros(0, "<u8")
    digest = hashlib.blake2b(arr.tobytes(), digest_size=16).hexdigest()
    name = f"checksums-{digest[:16]}.npy"
    atomic_write(Path(stage_dir) / name, lambda f: np.save(f, arr))
    return {"file": name, "algorithm": ALGORITHM, "blake2b": digest}


class FrameSums:
    """The recorded checksums of a stage, memory-mapped lazily in each process.

    ``get((video_id, modality))`` -> that video's per-frame uint64 checksums, or None when
    the video has none recorded."""

    def __init__(self, stage_dir: Path, manifest: dict):
        entry = manifest.get("checksums") or {}
        self.path = Path(stage_dir) / entry["file"] if entry.get("file") else None
        self.at = {v["video_id"]: (int(v["checksum_at"]), int(v["n_frames"]))
                   for v in manifest["videos"] if "checksum_at" in v}
        self._arr, self._pid, self._cache = None, None, {}

    def __getstate__(self):
        return {"path": self.path, "at": self.at, "_arr": None, "_pid": None, "_cache": {}}

    def __setstate__(self, state):
        self.__dict__.update(state)

    def get(self, key) -> np.ndarray | None:
        if self._pid != os.getpid():
            # A plain ndarray over the mapping: np.memmap's own indexing costs per read.
            self._arr = None if self.path is None else \
                np.load(self.path, mmap_mode="r").view(np.ndarray)
            self._pid, self._cache = os.getpid(), {}
        got = self._cache.get(key)
        if got is None:
            vid, m = key
            if self._arr is None or vid not in self.at:
                return None
            at, n = self.at[vid]
            got = self._cache[key] = self._arr[at:at + n] if m == "rgb" else \
                self._arr[at + n:at + 2 * n - 1]
        return got
