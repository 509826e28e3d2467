"""Frames are summed the first time a process reads them and again whenever the shard
file changes (``FrameReader``, check_once): damage made after a clean read is still found."""
import os
import time

import h5py
import numpy as np
import pytest

from motionclr.storage import DamagedShardError, FrameReader
from motionclr.storage import frame_reader as fr
from motionclr.storage.checksums import frame_sums

IDX = np.array([1, 3, 5, 7])


def _shard(tmp_path, age_s: float = 60.0):
    """An uncompressed one-chunk-per-frame dataset, its sums, and the file's mtime set
    ``age_s`` in the past (ctime stays now: the utime call itself sets it)."""
    a = np.random.default_rng(1).integers(0, 256, (9, 6, 10, 3), dtype=np.uint8)
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("v", data=a, chunks=(1, 6, 10, 3))
    old = time.time_ns() - int(age_s * 1e9)
    os.utime(path, ns=(old, old))
    return path, a, {("vid", "rgb"): frame_sums(a)}


def _flip(path, a, frame: int):
    """XOR one byte of ``frame`` in place, through the file system (as a user would)."""
    with h5py.File(path, "r") as f:
        off = f["v"].id.get_chunk_info_by_coord((frame, 0, 0, 0)).byte_offset
    with open(path, "r+b") as f:
        f.seek(off + 7)
        b = f.read(1)
        f.seek(off + 7)
        f.write(bytes([b[0] ^ 0x10]))


@pytest.fixture
def settled(tmp_path, monkeypatch):
    """(reader, open h5py file, path, frames, sums) of a shard counted as settled: ctime
    is now (the utime call sets it), so the settle time is set to 0."""
    monkeypatch.setattr(fr, "SETTLE_NS", 0)
    path, a, sums = _shard(tmp_path)
    with h5py.File(path, "r") as f:
        yield FrameReader(path, sums=sums), f, path, a, sums


def _read(r, f, idx=IDX, times=1):
    """Read frames ``idx`` of the test dataset ``times`` times; the last read's frames."""
    for _ in range(times):
        out = r.read(("vid", "rgb"), np.asarray(idx), lambda: f["v"])
    return out


def test_a_settled_file_is_summed_once_per_frame(settled):
    r, f, path, a, sums = settled
    np.testing.assert_array_equal(_read(r, f, times=3), a[IDX])
    assert r.frames_summed == len(IDX)
    _read(r, f, [3, 4])  # frame 4 is new
    assert r.frames_summed == len(IDX) + 2
    _read(r, f, [4, 5, 7])  # a new list of frames checked before
    assert r.frames_summed == len(IDX) + 2
    every = FrameReader(path, sums=sums, check_once=False)  # control: sums each read
    _read(every, f, times=3)
    assert every.frames_summed == 3 * len(IDX)


def test_damage_after_a_clean_read_is_found(settled):
    r, f, path, a, _ = settled
    _read(r, f, times=2)
    assert r.frames_summed == len(IDX)  # the second read trusted the first
    _flip(path, a, 5)  # a write: the file's mtime and ctime move
    with pytest.raises(DamagedShardError, match=r"vid .*rgb frames \[5\]"):
        _read(r, f)


def test_a_recently_changed_file_is_summed_on_every_read(tmp_path):
    # With the real settle time, a file whose ctime is seconds old is never trusted: two
    # writes within one coarse clock tick could leave its timestamps unchanged.
    path, a, sums = _shard(tmp_path)
    with h5py.File(path, "r") as f:
        r = FrameReader(path, sums=sums)
        _read(r, f, times=3)
        assert r.frames_summed == 3 * len(IDX)


def test_a_fork_does_not_inherit_what_its_parent_checked(settled):
    r, f = settled[:2]
    _read(r, f)
    r._pid = -1  # what a forked worker sees: another pid
    _read(r, f)
    assert r.frames_summed == 2 * len(IDX)
