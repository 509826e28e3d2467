"""``FrameReader.read(direct=True)``: O_DIRECT reads of unaligned frame ranges give exactly
the stored frames, leave nothing in the page cache, are always checked against their sums
(the bytes just came from the disk), and fall back to ordinary reads where the file
system refuses O_DIRECT. ``ShardClipDataset(direct=True)`` serves the same samples."""
import errno
import fcntl
import os
import sys

import h5py
import numpy as np
import pytest

from motionclr.storage import DamagedShardError, FrameReader
from motionclr.storage import frame_reader as fr
from motionclr.storage import warm as warm_mod
from motionclr.storage.checksums import frame_sums

pytestmark = pytest.mark.skipif(not (sys.platform.startswith("linux") and fr._O_DIRECT
                                     and fr._NOWAIT), reason="O_DIRECT, RWF_NOWAIT: Linux")
KEY = ("vid", "rgb")


def _shard(tmp_path, n=23):
    """Frames of 6x10x3 = 180 B (never page-aligned), one chunk each, synced to disk."""
    a = np.random.default_rng(2).integers(0, 256, (n, 6, 10, 3), dtype=np.uint8)
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("v", data=a, chunks=(1, 6, 10, 3))
    return path, a


def _evict(path):
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)


@pytest.mark.parametrize("idx", [[4, 5, 6, 7, 8], [1, 3, 5, 7, 9], [9, 2, 15, 3], [22],
                                 list(range(23))])
def test_direct_reads_are_the_stored_frames_and_bypass_the_cache(tmp_path, idx):
    path, a = _shard(tmp_path)
    with h5py.File(path, "r") as f:
        r = FrameReader(path)
        r.read(KEY, np.array([0]), lambda: f["v"])  # offsets looked up (metadata read)
        _evict(path)
        got = r.read(KEY, np.array(idx), lambda: f["v"], direct=True)
        np.testing.assert_array_equal(got, a[idx])
        assert r._dfd >= 0 and os.O_DIRECT & fcntl.fcntl(r._dfd, fcntl.F_GETFL)
        # nothing of those frames entered the page cache (they are served from the disk)
        assert r.read(KEY, np.array(idx), lambda: f["v"], cached_only=True) is None
        out = np.zeros_like(a[idx])  # into a caller's buffer, as the dataset reads
        r.read(KEY, np.array(idx), lambda: f["v"], out=out, direct=True)
        np.testing.assert_array_equal(out, a[idx])
        r.read(KEY, np.array(idx), lambda: f["v"])  # control: a buffered read caches them
        assert r.read(KEY, np.array(idx), lambda: f["v"], cached_only=True) is not None


def test_direct_reads_are_summed_every_time_and_find_damage(tmp_path, monkeypatch):
    monkeypatch.setattr(fr, "SETTLE_NS", 0)  # settled: buffered reads are summed once
    path, a = _shard(tmp_path)
    sums = {KEY: frame_sums(a)}
    idx = np.array([2, 4, 6])
    with h5py.File(path, "r") as f:
        r = FrameReader(path, sums=sums)
        for _ in range(2):
            r.read(KEY, idx, lambda: f["v"])
        assert r.frames_summed == 3
        for _ in range(2):
            r.read(KEY, idx, lambda: f["v"], direct=True)
        assert r.frames_summed == 9  # from the disk: checked whatever was checked before
        with h5py.File(path, "r") as g:
            off = g["v"].id.get_chunk_info_by_coord((4, 0, 0, 0)).byte_offset
        with open(path, "r+b") as w:
            w.seek(off + 5)
            w.write(bytes([a[4].reshape(-1)[5] ^ 0x01]))
        with pytest.raises(DamagedShardError, match=r"vid .*rgb frames \[4\]"):
            r.read(KEY, idx, lambda: f["v"], direct=True)


def test_a_refused_o_direct_falls_back_to_ordinary_reads(tmp_path, monkeypatch):
    path, a = _shard(tmp_path)
    real_open, real_preadv = os.open, os.preadv

    def no_direct(p, flags, *args):
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "O_DIRECT not supported (tmpfs)")
        return real_open(p, flags, *args)
    idx = np.array([3, 5, 7])
    with h5py.File(path, "r") as f:
        monkeypatch.setattr(fr.os, "open", no_direct)
        r = FrameReader(path)
        np.testing.assert_array_equal(r.read(KEY, idx, lambda: f["v"], direct=True), a[idx])
        assert r._dfd == -1
        monkeypatch.setattr(fr.os, "open", real_open)

        calls = []

        def bad_alignment(fd, bufs, off, *args):  # a device wanting a larger alignment
            if os.O_DIRECT & fcntl.fcntl(fd, fcntl.F_GETFL):
                calls.append(off)
                raise OSError(errno.EINVAL, "Invalid argument")
            return real_preadv(fd, bufs, off, *args)
        monkeypatch.setattr(fr.os, "preadv", bad_alignment)
        r2 = FrameReader(path)
        np.testing.assert_array_equal(r2.read(KEY, idx, lambda: f["v"], direct=True), a[idx])
        assert calls and r2._dfd == -1  # tried once, then ordinary reads
        np.testing.assert_array_equal(r2.read(KEY, idx, lambda: f["v"], direct=True), a[idx])
        assert len(calls) == 1


@pytest.mark.parametrize("io_depth", [1, 4])
def test_a_direct_dataset_serves_the_same_samples(tiny_stage, io_depth):
    from motionclr.datasets.samplers import UniformClips
    from motionclr.datasets.shard_dataset import ShardClipDataset
    _, stage = tiny_stage
    kw = dict(sampler=UniformClips(2, 4, 2), train=False)
    plain = ShardClipDataset(stage, None, **kw)
    direct = ShardClipDataset(stage, None, direct=True, io_depth=io_depth, **kw)
    js = list(range(min(6, len(plain))))
    want = plain.__getitems__(js)
    for shard in direct.shard_paths():
        _evict(shard)
    for got in (direct.__getitems__(js), [direct[j] for j in js]):
        for a, b in zip(want, got):
            for m in ("rgb", "flow"):
                np.testing.assert_array_equal(a[m], b[m])
    readers = [r for _, r in direct._files.values()]
    assert readers and all(r._dfd >= 0 for r in readers)


def test_direct_for_follows_the_setting_and_the_stage_size(tmp_path, monkeypatch):
    p = tmp_path / "s.h5"
    p.write_bytes(b"\0" * 1000)
    assert warm_mod.direct_for([p], "on")[0] and not warm_mod.direct_for([p], "off")[0]
    monkeypatch.setattr(warm_mod, "available_memory", lambda: 1000)
    assert not warm_mod.direct_for([p], "auto")[0]  # fits: the page cache keeps it
    monkeypatch.setattr(warm_mod, "available_memory", lambda: int(1000 / warm_mod.DIRECT_AUTO) - 1)
    on, why = warm_mod.direct_for([p], "auto")
    assert on and "O_DIRECT" in why
    with pytest.raises(ValueError, match="valid: auto, on, off"):
        warm_mod.direct_for([p], "yes")
