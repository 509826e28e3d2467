"""``storage.warm``: a stage that fits is read whole, once, and left unchanged; one that
does not fit (or ``data.warm=0``) is skipped with the reason."""
import hashlib

import numpy as np

from motionclr.storage import warm as warm_mod


def _files(tmp_path):
    rng = np.random.default_rng(0)
    out = []
    for k, n in enumerate((3 * warm_mod.BLOCK + 12345, 777, 0)):  # > one block, tiny, empty
        p = tmp_path / f"shard-{k}.h5"
        p.write_bytes(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
        out.append(p)
    return out


def test_warm_reads_every_byte_and_changes_nothing(tmp_path, monkeypatch):
    files = _files(tmp_path)
    before = [hashlib.blake2b(p.read_bytes()).hexdigest() for p in files]
    read = []
    real = warm_mod.os.preadv

    def counting(fd, bufs, off, *a):
        got = real(fd, bufs, off, *a)
        read.append(got)
        return got
    monkeypatch.setattr(warm_mod.os, "preadv", counting)
    res = warm_mod.warm(files, 0.5)
    total = sum(p.stat().st_size for p in files)
    assert res["bytes"] == total and sum(read) == total and res["seconds"] >= 0
    assert [hashlib.blake2b(p.read_bytes()).hexdigest() for p in files] == before


def test_warm_skips_what_does_not_fit_or_is_off(tmp_path, monkeypatch):
    files = _files(tmp_path)
    total = sum(p.stat().st_size for p in files)
    assert "data.warm is 0" in warm_mod.warm(files, 0)["skipped"]
    monkeypatch.setattr(warm_mod, "available_memory", lambda: 2 * total - 1)
    assert "GiB available" in warm_mod.warm(files, 0.5)["skipped"]  # needs 2 x total
    assert warm_mod.warm(files, 0.51)["bytes"] == total


def test_available_memory_is_linux_memavailable():
    got = warm_mod.available_memory()
    assert got is None or got > 0
