"""Damaged shards are never read silently: per-frame checksums, `verify --repair`, format 3."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from motionclr.config import load_config
from motionclr.datasets.samplers import UniformClips
from motionclr.datasets.shard_dataset import ShardClipDataset
from motionclr.storage import DamagedShardError, FrameReader, StaleFormatError, load_manifest
from motionclr.storage.checksums import frame_sums
from tests.conftest import manifest_digests, tiny_overrides


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "motionclr", *args], capture_output=True,
                          text=True, timeout=600)


def _copy_stage(tiny_stage, tmp_path):
    """A private copy of the finished tiny stage, found by the same config (new cache)."""
    cfg, stage = tiny_stage
    dst = tmp_path / "cache" / stage.parent.name / stage.name
    shutil.copytree(stage, dst)
    return dst


def _damage(stage, video: dict, modality="rgb") -> None:
    """Flip 64 bytes in the middle of every frame of ``video`` (``modality``) in its shard."""
    chunk, runs = video["layout"][modality]
    shape = (video["height"], video["width"], 3 if modality == "rgb" else 2)
    fb = int(np.prod(shape))
    offs = FrameReader.decode_offsets(runs, chunk * fb)
    with open(stage / video["shard"], "r+b") as f:
        for off in offs:
            f.seek(int(off) + fb // 2)
            b = bytearray(f.read(64))
            f.seek(int(off) + fb // 2)
            f.write(bytes(x ^ 0xFF for x in b))


def test_frame_sums_see_every_single_byte_change():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)  # 105 B: a 1-byte tail word
    base = frame_sums(frames)
    for pos in range(frames[0].size):
        for delta in (1, 128, 255):
            f = frames.copy()
            flat = f[1].reshape(-1)
            flat[pos] = (int(flat[pos]) + delta) % 256
            s = frame_sums(f)
            assert s[0] == base[0] and s[1] != base[1], (pos, delta)


def test_frame_sums_are_the_uint64_word_sums_modulo_2_64(monkeypatch):
    """The fast path (torch's int64 sum) gives numpy's uint64 sums bit for bit, overflow
    included: checksums written by either read back equal by the other."""
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (6, 40, 56, 3), dtype=np.uint8)  # words near 2**64: wraps
    frames[0] = 255
    want = np.array([int(w.sum(dtype=object)) % 2**64
                     for w in frames.reshape(6, -1).view(np.uint64).astype(object)],
                    dtype=np.uint64)
    assert (frame_sums(frames) == want).all()
    import motionclr.storage.checksums as checksums
    monkeypatch.setattr(checksums, "_torch", False)  # as when torch is not installed
    assert (frame_sums(frames) == want).all()  # the numpy fallback


def test_damaged_shard_fails_training_and_eval_until_repaired(tiny_stage, tiny_root, tmp_path):
    cfg0, clean = tiny_stage
    stage = _copy_stage(tiny_stage, tmp_path)
    want = manifest_digests(stage)
    man = load_manifest(stage)
    victim = next(v for v in man["videos"] if v["splits"]["1"] == "train")
    _damage(stage, victim)

    # Reading any clip of the damaged video raises, naming shard, video and the repair.
    ds = ShardClipDataset(stage, None, sampler=UniformClips(4, 1, 2), train=False)
    i = next(k for k, v in enumerate(ds.videos) if v["video_id"] == victim["video_id"])
    with pytest.raises(DamagedShardError) as e:
        ds[i]
    msg = str(e.value)
    assert victim["shard"] in msg and victim["video_id"] in msg
    assert f"motionclr verify --repair {stage}" in msg
    assert ds[(i + 1) % len(ds)]["rgb"].dtype == np.uint8  # other videos still read

    # pretrain (DataLoader workers) stops with that one line and writes no checkpoint.
    run = tmp_path / "run"
    over = tiny_overrides(tiny_root, tmp_path / "cache") + [f"train.run={run}",
                                                           "train.num_workers=2"]
    res = _cli("pretrain", *over)
    assert res.returncode == 2, res.stdout + res.stderr
    err = [ln for ln in res.stderr.splitlines() if "error" in ln]  # (tqdm writes there too)
    assert len(err) == 1 and "Traceback" not in res.stderr, res.stderr
    assert err[0].startswith("motionclr pretrain: error: ") and victim["shard"] in err[0]
    assert victim["video_id"] in err[0] and "motionclr verify --repair" in err[0]
    assert not (run / "checkpoint.pt").exists()

    # Eval's feature extraction reads through the same check.
    from motionclr.eval.features import extract
    from motionclr.train.methods import build_method
    cfg = load_config(None, tiny_overrides(tiny_root, tmp_path / "cache"))
    torch.manual_seed(0)
    with pytest.raises(DamagedShardError, match="verify --repair"):
        extract(build_method(cfg), stage, "train", cfg, progress=False)

    res = _cli("verify", str(stage))
    assert res.returncode == 1 and f"{victim['video_id']}: checksum mismatch" in res.stdout

    # --repair recomputes exactly that video; the stage equals the clean one again.
    res = _cli("verify", "--repair", str(stage))
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"recomputing {victim['video_id']} " in res.stdout
    assert res.stdout.count("recomputing") == 1 and "repaired 1 video(s)" in res.stdout
    assert manifest_digests(stage) == want
    after = load_manifest(stage)
    assert {v["shard"] for v in after["videos"]} == {p.name for p in stage.glob("shard-*.h5")}
    assert len(list(stage.glob("checksums-*.npy"))) == 1 and not (stage / "parts").exists()
    fixed = ShardClipDataset(stage, None, sampler=UniformClips(4, 1, 2), train=False)
    ref = ShardClipDataset(clean, None, sampler=UniformClips(4, 1, 2), train=False)
    for k in range(len(ref)):
        a, b = fixed[k], ref[k]
        assert a["video_id"] == b["video_id"]
        np.testing.assert_array_equal(a["rgb"], b["rgb"])
        np.testing.assert_array_equal(a["flow"], b["flow"])
    res = _cli("pretrain", *over)
    assert res.returncode == 0, res.stderr[-2000:]


def test_damaged_flow_stops_the_index_stage(tiny_stage, tmp_path):
    from motionclr.pipeline.index_stage import run_index_stage
    stage = _copy_stage(tiny_stage, tmp_path)
    victim = load_manifest(stage)["videos"][3]
    _damage(stage, victim, "flow")
    with pytest.raises(DamagedShardError, match=victim["video_id"]):
        run_index_stage(tiny_stage[0], stage, progress=False)
    assert not list(stage.glob("index-*.h5"))


def test_loader_workers_report_the_damage(tiny_stage, tmp_path):
    stage = _copy_stage(tiny_stage, tmp_path)
    _damage(stage, load_manifest(stage)["videos"][0])
    ds = ShardClipDataset(stage, None, sampler=UniformClips(4, 1, 1), train=False)
    with pytest.raises(DamagedShardError, match="verify --repair"):
        for _ in DataLoader(ds, batch_size=4, num_workers=2, collate_fn=list):
            pass


def test_stage_of_an_older_format_is_refused(tiny_stage, tmp_path):
    stage = _copy_stage(tiny_stage, tmp_path)
    man = json.loads((stage / "manifest.json").read_text())
    man["format_version"] = 2
    for v in man["videos"]:
        v.pop("checksum_at")
    del man["checksums"]
    (stage / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(StaleFormatError, match="format 2.*run `motionclr flow` again"):
        ShardClipDataset(stage, "train")
    res = _cli("verify", str(stage))
    assert res.returncode == 1 and "storage format 2" in res.stdout
    # Without the raw videos, the stage is looked up by its settings: an old one is not taken.
    from motionclr.pipeline.stages import find_flow_stage
    cfg = load_config(None, tiny_overrides(tmp_path / "no-videos-here", tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match="older storage format"):
        find_flow_stage(cfg)


@pytest.mark.parametrize("compression", [None, "lzf"])
def test_frame_reader_checks_raw_and_compressed_frames(tmp_path, compression):
    import h5py
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (9, 6, 10, 3), dtype=np.uint8)
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("v", data=a, chunks=(1, 6, 10, 3), compression=compression)
    sums = {("vid", "rgb"): frame_sums(a)}
    with h5py.File(path, "r") as f:
        idx = np.array([1, 3, 5, 7])
        got = FrameReader(path, sums=sums).read(("vid", "rgb"), idx, lambda: f["v"])
        np.testing.assert_array_equal(got, a[idx])
        wrong = {("vid", "rgb"): frame_sums(a) + np.uint64(1) * (np.arange(9) == 5)}
        with pytest.raises(DamagedShardError, match=r"vid .*rgb frames \[5\]"):
            FrameReader(path, sums=wrong).read(("vid", "rgb"), idx, lambda: f["v"])


def test_damaged_checksum_file_is_found_and_rewritten(tiny_stage, tmp_path):
    stage = _copy_stage(tiny_stage, tmp_path)
    man = load_manifest(stage)
    sums_file = stage / man["checksums"]["file"]
    arr = np.load(sums_file)
    arr[5] ^= np.uint64(1)
    np.save(sums_file, arr)  # the shards are intact, their recorded checksums are not
    res = _cli("verify", str(stage))
    assert res.returncode == 1 and "frame checksums damaged" in res.stdout
    res = _cli("verify", "--repair", str(stage))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "repaired 0 video(s), checksum file rewritten" in res.stdout
    assert manifest_digests(stage) == manifest_digests(tiny_stage[1])
    assert len(list(stage.glob("checksums-*.npy"))) == 1
    ds = ShardClipDataset(stage, None, sampler=UniformClips(4, 1, 3), train=False)
    assert all(ds[k]["rgb"].shape[0] == 3 for k in range(len(ds)))
