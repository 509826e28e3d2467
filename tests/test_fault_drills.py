"""Fault drills (see docs/reliability.md): kills, a full or read-only disk, hostile inputs."""
import json
import os
import pickle
import random
import resource
import signal
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import pytest

from motionclr.config import load_config
from motionclr.datasets.synthetic import encode_video, generate
from motionclr.pipeline.decode import DecodeError, decode_video
from motionclr.pipeline.flow_stage import StorageError, run_flow_stage
from motionclr.pipeline.verify import verify_stage
from tests.conftest import manifest_digests, tiny_overrides


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("syn"), groups=2, clips=1, n_frames=10,
                    size=(64, 48))



def _flow_cmd(over):
    return [sys.executable, "-m", "motionclr", "flow", *over]


def test_kill9_at_random_points_then_rerun_is_identical(root, tmp_path):
    reference = manifest_digests(
        run_flow_stage(load_config(None, tiny_overrides(root, tmp_path / "r")), False))
    over = tiny_overrides(root, tmp_path / "k")
    rng = random.Random(0)
    for _ in range(4):
        p = subprocess.Popen(_flow_cmd(over), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(rng.uniform(0.5, 2.0))
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    stage = run_flow_stage(load_config(None, over), False)
    assert manifest_digests(stage) == reference
    assert not list(stage.rglob("*.tmp")) and verify_stage(stage) == []
    done = Counter(json.loads(x)["video_id"] for x in (stage / "events.jsonl").read_text()
                   .splitlines() if json.loads(x)["status"] == "done")
    assert max(done.values()) == 1                 # no finished video was computed twice


def _limited(limit_bytes):
    def pre():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return pre


def _one_disk_line(res, command):
    """Exit 2 and the one disk line (tqdm's bars may share stderr), never a traceback."""
    assert res.returncode == 2, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    errors = [ln.split("\r")[-1] for ln in res.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1 and errors[0].startswith(f"motionclr {command}: error: cannot "
                                                     "write to"), res.stderr[-2000:]
    assert "File too large" in errors[0] and "rerun" in errors[0]


# RLIMIT_FSIZE makes writes past the limit fail with EFBIG, as ENOSPC would on a full disk:
# 30 kB stops the first part (~65 kB); 200 kB lets every part through and stops the shard
# (~1 MB), where h5py reports the failed write as a RuntimeError when it closes the file.
@pytest.mark.parametrize("limit", [30_000, 200_000], ids=["parts", "shards"])
def test_disk_full_is_a_clear_error_and_corrupts_nothing(root, tmp_path, limit):
    over = tiny_overrides(root, tmp_path / "full")
    res = subprocess.run(_flow_cmd(over), capture_output=True, text=True,
                         preexec_fn=_limited(limit))
    _one_disk_line(res, "flow")
    stage = next((tmp_path / "full").glob("synthetic/flow-*"))
    assert not list(stage.rglob("*.tmp"))
    assert not (stage / "manifest.json").exists() and not list(stage.glob("shard-*"))
    assert not list((stage / "parts").glob("*.failed.json"))  # not blamed on the videos
    if limit == 200_000:
        assert len(list((stage / "parts").glob("*.h5"))) == 16  # finished videos kept
    final = run_flow_stage(load_config(None, over), False)      # disk "fixed": finish
    assert verify_stage(final) == [] and len(manifest_digests(final)) == 16


def test_disk_full_writing_the_index_checkpoint_and_features(root, tmp_path):
    """The same one line for the motion index, a training checkpoint and eval features; no
    partial file is left, and the rerun completes."""
    over = tiny_overrides(root, tmp_path / "c", **{"train.run": str(tmp_path / "run")})
    stage = run_flow_stage(load_config(None, over), False)
    cli = [sys.executable, "-m", "motionclr"]
    steps = [("index", [*cli, "index", *over, "method.name=mcl"], 30_000, stage),   # ~90 kB
             ("pretrain", [*cli, "pretrain", *over], 100_000, tmp_path / "run"),  # ~360 kB
             ("eval", [*cli, "eval", "retrieval", "--run", str(tmp_path / "run")], 1_000,
              tmp_path / "run")]                                       # features ~2 kB
    for command, cmd, limit, where in steps:
        res = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=_limited(limit))
        _one_disk_line(res, command)
        assert not list(where.rglob("*.tmp")), command
        assert not list(where.glob("index-*.h5")) and not (where / "checkpoint.pt").exists() \
            if command != "eval" else not list((where / "features").glob("*.npz"))
        res = subprocess.run(cmd, capture_output=True, text=True)  # the disk is fixed
        assert res.returncode == 0, (command, res.stderr[-2000:])
    assert list(stage.glob("index-*.h5")) and (tmp_path / "run" / "checkpoint.pt").is_file()
    assert list((tmp_path / "run" / "features").glob("*.npz"))


def test_read_only_output_is_a_clear_error(root, tmp_path):
    out = tmp_path / "ro"
    out.mkdir()
    if subprocess.run(["chattr", "+i", str(out)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not supported on this filesystem")
    try:
        with pytest.raises(StorageError, match="cannot write to"):
            run_flow_stage(load_config(None, tiny_overrides(root, out)), False)
    finally:
        subprocess.run(["chattr", "-i", str(out)])


def test_hostile_videos(tmp_path):
    # Wrong extension: an MP4-in-.avi decodes by content, not by name.
    frames = np.full((5, 32, 32, 3), 120, np.uint8)
    encode_video(frames, tmp_path / "real.mp4")
    os.rename(tmp_path / "real.mp4", tmp_path / "named.avi")
    assert decode_video(tmp_path / "named.avi", short_side=0)[0].shape == (5, 32, 32, 3)
    # Huge declared dimensions are refused before any frame is decoded.
    huge = tmp_path / "huge.avi"
    huge.write_bytes(b"YUV4MPEG2 W12000 H12000 F25:1 Ip A1:1 C420jpeg\nFRAME\n" + bytes(500))
    with pytest.raises(DecodeError, match="exceeds"):
        decode_video(huge)
    # A file that makes ffmpeg hang (a concat script pointing at a FIFO) hits the timeout.
    os.mkfifo(tmp_path / "never.fifo")
    (tmp_path / "hang.avi").write_text("ffconcat version 1.0\nfile never.fifo\n")
    t0 = time.time()
    with pytest.raises(DecodeError, match="timed out"):
        decode_video(tmp_path / "hang.avi", timeout=2)
    assert time.time() - t0 < 15


def test_split_file_pointing_outside_root(tmp_path):
    root = generate(tmp_path / "syn", groups=1, clips=1, n_frames=4, size=(32, 32),
                    test_groups=0)
    (root / "ucfTrainTestlist/trainlist01.txt").write_text("MoveRight/../../../etc/passwd 1\n")
    res = subprocess.run(_flow_cmd(tiny_overrides(root, tmp_path / "c")), capture_output=True,
                         text=True)
    assert res.returncode == 2 and "inside" in res.stderr


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def test_foreign_checkpoint_is_refused_not_executed(tmp_path, monkeypatch):
    from motionclr.eval.checkpoint import load_run
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(pickle.dumps({"model": _Evil()}))
    with pytest.raises(ValueError, match="not a motionclr checkpoint"):
        load_run(run)
    assert not (tmp_path / "pwned.txt").exists()
    import torch
    torch.save({"model": {}, "epoch": 0}, run / "checkpoint.pt")   # loadable, but not ours
    with pytest.raises(ValueError, match="not a motionclr checkpoint"):
        load_run(run)
