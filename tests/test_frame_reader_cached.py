"""``FrameReader.read(cached_only=True)``: warm clips read without read-ahead hints, cold
ones left to the hinted path, and the frames are the same either way."""
import os
import sys

import h5py
import numpy as np
import pytest

from motionclr.storage import FrameReader
from motionclr.storage import frame_reader as fr


@pytest.mark.skipif(not (sys.platform.startswith("linux") and fr._NOWAIT),
                    reason="RWF_NOWAIT: Linux >= 4.14")
def test_cached_only_reads_exactly_what_the_page_cache_holds(tmp_path):
    path = tmp_path / "frames.h5"
    data = np.random.default_rng(0).integers(0, 256, (40, 32, 48, 3), dtype=np.uint8)
    with h5py.File(path, "w") as f:
        f.create_dataset("rgb", data=data, chunks=(1, 32, 48, 3))
    f = h5py.File(path, "r")
    idx = np.arange(4, 36, 2)

    def evict():  # drop the file's clean pages from the page cache
        fd = os.open(path, os.O_RDONLY)
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)

    reader = FrameReader(path)
    reader.read("rgb", idx[:1], lambda: f["rgb"])  # offsets looked up (metadata read)
    evict()
    assert reader.read("rgb", idx, lambda: f["rgb"], cached_only=True) is None
    assert np.array_equal(reader.read("rgb", idx, lambda: f["rgb"]), data[idx])  # blocking
    warm = reader.read("rgb", idx, lambda: f["rgb"], cached_only=True)
    assert warm is not None and np.array_equal(warm, data[idx])
    # a compressed dataset is read by h5py, which cannot say what is cached
    with h5py.File(tmp_path / "z.h5", "w") as z:
        z.create_dataset("rgb", data=data, chunks=(1, 32, 48, 3), compression="gzip")
    z = h5py.File(tmp_path / "z.h5", "r")
    zr = FrameReader(tmp_path / "z.h5")
    assert zr.read("rgb", idx, lambda: z["rgb"], cached_only=True) is None
    assert np.array_equal(zr.read("rgb", idx, lambda: z["rgb"]), data[idx])


def test_a_batch_is_the_same_cold_or_warm(tiny_stage):
    """``ShardClipDataset.__getitems__`` gives the same samples whether its clips come
    from the page cache or through the hinted blocking reads."""
    from motionclr.datasets.samplers import UniformClips
    from motionclr.datasets.shard_dataset import ShardClipDataset
    _, stage = tiny_stage
    ds = ShardClipDataset(stage, None, sampler=UniformClips(2, 4, 2), train=False)
    js = list(range(min(6, len(ds))))
    warm = ds.__getitems__(js)
    for shard in stage.glob("*.h5"):
        fd = os.open(shard, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
    cold = ds.__getitems__(js)
    single = [ds[j] for j in js]
    for a, b, c in zip(warm, cold, single):
        for m in ("rgb", "flow"):
            assert np.array_equal(a[m], b[m]) and np.array_equal(a[m], c[m])
