"""The flow stage: shards, manifest, cache keys, bad inputs, resume after a kill."""
import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from motionclr.config import load_config
from motionclr.datasets.synthetic import encode_video, generate
from motionclr.flow import compute_flow, dequantize
from motionclr.pipeline.flow_stage import run_flow_stage
from motionclr.storage.shards import read_video
from tests.conftest import tiny_overrides


def test_shards_round_trip_and_attributes(tiny_stage, tiny_root):
    cfg, stage = tiny_stage
    man = json.loads((stage / "manifest.json").read_text())
    assert len(man["videos"]) == 16 and man["failed"] == []
    assert not list(stage.glob("*.tmp")) and not list((stage / "parts").iterdir())
    v = man["videos"][0]
    rgb, flow_q, attrs = read_video(stage, v["video_id"])
    assert rgb.dtype == np.uint8 and flow_q.dtype == np.uint8
    assert rgb.shape == (12, 32, 42, 3) and flow_q.shape == (11, 32, 42, 2)
    assert v["n_frames"] == 12 and attrs["n_frames"] == 12
    assert attrs["bound"] == 20 and attrs["flow_method"] == cfg.flow.method == "tvl1_torch"
    assert "frame i to frame i+1" in attrs["convention"]
    assert len(attrs["source_blake2b"]) == 32 and attrs["versions"]["opencv"]
    with h5py.File(stage / v["shard"], "r") as f:
        ds = f["videos"][v["video_id"]]["rgb"]
        assert ds.chunks[0] < ds.shape[0]  # chunked along time
    # The stored flow is the quantised TV-L1 of the stored frames.
    expect = compute_flow(rgb, cfg.flow.method, **cfg.flow.params)
    err = np.abs(dequantize(flow_q, 20.0) - np.clip(expect, -20, 20))
    assert err.max() <= 20 / 255 + 1e-4


def test_labels_zero_based_and_splits_recorded(tiny_stage):
    _, stage = tiny_stage
    man = json.loads((stage / "manifest.json").read_text())
    labels = sorted({v["label"] for v in man["videos"]})
    assert labels == list(range(8))
    assert man["classes"][0] == "MoveRight"
    subsets = [v["splits"]["1"] for v in man["videos"]]
    assert subsets.count("test") == 8 and subsets.count("train") == 8


def test_cache_hit_and_miss(tiny_stage, tiny_root, capsys):
    cfg, stage = tiny_stage
    before = (stage / "manifest.json").stat().st_mtime_ns
    assert run_flow_stage(cfg) == stage
    assert "cache hit" in capsys.readouterr().out
    assert (stage / "manifest.json").stat().st_mtime_ns == before
    other = load_config(None, tiny_overrides(tiny_root, cfg.data.cache, **{
        "flow.method": "farneback", "data.limit": 2}))
    stage2 = run_flow_stage(other, progress=False)
    assert stage2 != stage and (stage / "manifest.json").is_file()
    assert json.loads((stage2 / "manifest.json").read_text())["params"]["flow"]["method"] == \
        "farneback"


def _bad_dataset(root):
    generate(root, groups=1, clips=1, n_frames=6, size=(48, 32), seed=1, test_groups=0)
    # Replace some training videos with bad files, keeping the split files.
    (root / "MoveLeft/v_MoveLeft_g01_c01.avi").write_bytes(b"")
    (root / "MoveUp/v_MoveUp_g01_c01.avi").write_bytes(b"not a video\n" * 50)
    good = (root / "MoveDown/v_MoveDown_g01_c01.avi").read_bytes()
    (root / "MoveDown/v_MoveDown_g01_c01.avi").write_bytes(good[: len(good) // 3])
    one = np.full((1, 32, 48, 3), 90, np.uint8)
    encode_video(one, root / "ZoomIn/v_ZoomIn_g01_c01.avi")
    (root / "ZoomOut/v_ZoomOut_g01_c01.avi").unlink()


def test_bad_inputs_recorded_and_run_goes_on(tmp_path):
    root = tmp_path / "bad"
    _bad_dataset(root)
    cfg = load_config(None, tiny_overrides(root, tmp_path / "cache"))
    stage = run_flow_stage(cfg, progress=False)
    man = json.loads((stage / "manifest.json").read_text())
    failed = {f["video_id"].split("/")[0]: f["reason"] for f in man["failed"]}
    assert "empty" in failed["MoveLeft"]
    assert "no decodable video stream" in failed["MoveUp"]
    assert "frame" in failed["ZoomIn"]           # one frame: no flow
    assert "not found" in failed["ZoomOut"]
    done = {v["video_id"].split("/")[0] for v in man["videos"]}
    assert {"MoveRight", "RotateClockwise", "RotateAnticlockwise"} <= done
    # A truncated file either yields its whole frames or is recorded, never lost silently.
    assert ("MoveDown" in done) != ("MoveDown" in failed)
    assert len(done) + len(failed) == 8


def test_resume_after_kill(tmp_path):
    root = generate(tmp_path / "syn", groups=2, clips=1, n_frames=12, size=(64, 48))
    over = tiny_overrides(root, tmp_path / "cache")
    cmd = [sys.executable, "-m", "motionclr", "flow", *over, "pipeline.workers=1",
           "flow.params={nscales: 5, warps: 5}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    cfg = load_config(None, over + ["flow.params={nscales: 5, warps: 5}"])
    deadline = time.time() + 120
    parts = None
    while time.time() < deadline:
        found = list((tmp_path / "cache").glob("synthetic/flow-*/parts/*.h5"))
        if len(found) >= 3:
            parts = found
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert parts, "the flow stage never produced a finished video"
    stage = parts[0].parent.parent
    assert not (stage / "manifest.json").exists()
    done_before = {p.name: p.stat().st_mtime_ns for p in (stage / "parts").glob("*.h5")}
    out = run_flow_stage(cfg, progress=False)
    assert out == stage
    man = json.loads((stage / "manifest.json").read_text())
    assert len(man["videos"]) == 16
    assert man["timing"]["computed"] == 16 - len(done_before)  # nothing redone
    assert not list(stage.rglob("*.tmp"))


def test_shard_slices_then_pack(tmp_path):
    root = generate(tmp_path / "syn", groups=1, clips=1, n_frames=6, size=(48, 32),
                    test_groups=0)
    over = tiny_overrides(root, tmp_path / "cache")
    for i in range(2):
        stage = run_flow_stage(load_config(None, over + [f"pipeline.shard={i}/2"]),
                               progress=False)
    # Both slices finished: the second slice's run packed everything.
    assert len(json.loads((stage / "manifest.json").read_text())["videos"]) == 8
    with pytest.raises(ValueError, match="i/n"):
        run_flow_stage(load_config(None, over + ["pipeline.shard=3", "data.limit=1"]),
                       progress=False)


def test_shards_are_phase_major(tiny_stage):
    """Frames of each stride-2 phase lie back to back in the shard file, so a stride-2 clip
    is one byte range per modality and a stride-1 clip two; the manifest records the chunk
    offsets as runs, and the reader returns the time-ordered frames either way."""
    from motionclr.storage.frame_reader import FrameReader
    from motionclr.datasets.shard_dataset import ShardClipDataset
    cfg, stage = tiny_stage
    assert cfg.pipeline.time_phases == 2
    man = json.loads((stage / "manifest.json").read_text())
    known = ShardClipDataset._layouts(man)
    for v in man["videos"]:
        rgb, flow_q, _ = read_video(stage, v["video_id"])
        reader = FrameReader(stage / v["shard"], known[v["shard"]])
        with h5py.File(stage / v["shard"], "r") as f:
            g = f["videos"][v["video_id"]]
            for m, arr in (("rgb", rgb), ("flow", flow_q)):
                chunk, runs = v["layout"][m]
                assert chunk == 1 and len(runs) == 2  # one run per phase
                fb = arr[0].nbytes
                # the manifest's runs decode to HDF5's own chunk offsets
                assert np.array_equal(FrameReader.decode_offsets(runs, fb),
                                      FrameReader.table(g[m])[1])
                get = lambda: g[m]  # noqa: E731 (only called without a manifest table)
                for idx, ranges in ((np.arange(1, 10, 2), 1), (np.arange(0, 8, 2), 1),
                                    (np.arange(2, 9), 2), (np.array([7, 0, 7, 3]), 3)):
                    spans = reader.spans((v["video_id"], m), idx, get)
                    assert len(spans) == ranges, (m, idx, spans)
                    assert sum(n for _, n in spans) == len(set(idx.tolist())) * fb
                    got = reader.read((v["video_id"], m), idx, get)
                    assert np.array_equal(got, arr[idx]), (m, idx)


def test_truncated_videos_pack_whole_frames_and_record_ffmpeg_errors(tmp_path):
    """An .avi cut at 80 % and a faststart .mp4 cut at 70 %: the packed frames of each equal
    the complete file's first frames exactly, and ffmpeg's complaint is in the manifest."""
    from tests.test_decode import CUTS, _encode, _textured_frames
    root = tmp_path / "videos"
    for name, codec, frac in CUTS[:2]:
        (root / "full").mkdir(parents=True, exist_ok=True)
        (root / "cut").mkdir(exist_ok=True)
        _encode(_textured_frames(), root / "full" / name, codec)
        data = (root / "full" / name).read_bytes()
        (root / "cut" / name).write_bytes(data[: int(len(data) * frac)])
    cfg = load_config(None, ["data.dataset=folder", f"data.root={root}",
                             f"data.cache={tmp_path / 'cache'}", "decode.short_side=0",
                             "pipeline.workers=1", "flow.method=farneback"])
    stage = run_flow_stage(cfg, progress=False)
    man = json.loads((stage / "manifest.json").read_text())
    rec = {v["video_id"]: v for v in man["videos"]}
    assert man["failed"] == [] and len(rec) == 4
    for name, _, _ in CUTS[:2]:
        stem = name.rsplit(".", 1)[0]
        full, _, _ = read_video(stage, f"full/{stem}")
        cut, _, attrs = read_video(stage, f"cut/{stem}")
        assert 2 <= len(cut) < len(full)
        assert np.array_equal(cut, full[: len(cut)])
        assert rec[f"cut/{stem}"]["decode_errors"] and attrs["decode_errors"]
        assert "decode_errors" not in rec[f"full/{stem}"]
