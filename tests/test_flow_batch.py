"""Cross-video batched flow (the CUDA path of the flow stage), run on the CPU: same parts as the
per-video path, several processes on one ledger, bad videos recorded, no oversubscription."""
import json
from collections import Counter

import numpy as np
import pytest

from motionclr.config import load_config
from motionclr.datasets.synthetic import encode_video
from motionclr.pipeline import flow_batch
from motionclr.pipeline.flow_stage import run_flow_stage
from motionclr.storage.shards import read_video
from tests.conftest import manifest_digests, tiny_overrides

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def mixed_root(tmp_path_factory):
    """A folder dataset with landscape and portrait videos (two frame sizes after decoding,
    so batches must be formed per size), videos of different lengths, and one broken file."""
    import cv2
    root = tmp_path_factory.mktemp("mixed")
    rng = np.random.default_rng(0)
    specs = [("wide", 0, (48, 64), 9), ("wide", 1, (48, 64), 12), ("wide", 2, (48, 64), 7),
             ("tall", 0, (64, 48), 10), ("tall", 1, (64, 48), 8)]
    for cls, i, (h, w), n in specs:
        bg = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (7, 7), 2.0)
        frames = np.stack([np.roll(np.roll(bg, t, axis=1), t // 2, axis=0) for t in range(n)])
        (root / cls).mkdir(exist_ok=True)
        encode_video(frames, root / cls / f"v{i}.avi")
    (root / "tall" / "broken.avi").write_bytes(b"not a video at all" * 10)
    return root


def _cfg(root, cache, **extra):
    over = {"data.dataset": "folder", "flow.method": "tvl1_torch", "flow.device": "cpu",
            "pipeline.workers": 2, **extra}
    return load_config(None, tiny_overrides(root, cache, **over))


def _batched(monkeypatch):
    # The flow stage takes this path on CUDA; here the same code runs on the CPU.
    monkeypatch.setattr(flow_batch, "wanted", lambda cfg: True)


def _parts(stage):
    man = json.loads((stage / "manifest.json").read_text())
    return man, {v["video_id"]: read_video(stage, v["video_id"]) for v in man["videos"]}


@pytest.mark.parametrize("preset,batch", [("opencv", 4), ("fast", 5)])
def test_batched_shards_equal_per_video_shards(mixed_root, tmp_path, monkeypatch, preset, batch):
    params = {"flow.params": f"{{preset: {preset}, batch_size: {batch}}}"}
    ref = run_flow_stage(_cfg(mixed_root, tmp_path / "per_video", **params), progress=False)
    _batched(monkeypatch)
    got = run_flow_stage(_cfg(mixed_root, tmp_path / "batched", **params), progress=False)
    man_ref, parts_ref = _parts(ref)
    man, parts = _parts(got)
    assert len(parts) == 5 and {f["video_id"] for f in man["failed"]} == {"tall/broken"}
    assert {v["video_id"]: (v["height"], v["width"]) for v in man["videos"]} == \
        {v["video_id"]: (v["height"], v["width"]) for v in man_ref["videos"]}
    assert len({(v["height"], v["width"]) for v in man["videos"]}) == 2
    assert man["failed"] == man_ref["failed"]
    # Batches of 4-5 pairs cut across videos (7-11 pairs each), yet every pair gets the
    # answer it gets alone: on the CPU the parts are bit-identical, attributes included.
    assert manifest_digests(got) == manifest_digests(ref)
    for vid, (rgb, flow_q, attrs) in parts.items():
        rgb_r, flow_r, attrs_r = parts_ref[vid]
        np.testing.assert_array_equal(rgb, rgb_r)
        np.testing.assert_array_equal(flow_q, flow_r)
        assert attrs == attrs_r
    # the flow is not trivially zero: the videos move 1 px/frame in x
    dx = np.concatenate([(f[..., 0].astype(float) * 40 / 255 - 20).ravel()
                         for _, f, _ in parts.values()])
    assert 0.5 < np.median(dx) < 1.5


def test_several_processes_share_one_ledger(mixed_root, tmp_path):
    """Two processes (as two GPUs would), each starting at a different video: every video is
    computed exactly once and the result equals a single process's."""
    cfg = _cfg(mixed_root, tmp_path / "two", **{"flow.params": "{preset: fast, batch_size: 6}"})
    ref = run_flow_stage(_cfg(mixed_root, tmp_path / "one",
                              **{"flow.params": "{preset: fast, batch_size: 6}"}), False)
    from motionclr.datasets.sources import list_videos
    from motionclr.pipeline.flow_stage import stage_dir, write_manifest
    entries = list_videos("folder", mixed_root, 1)
    out = stage_dir(cfg, entries)
    (out / "parts").mkdir(parents=True)
    results = flow_batch.run_batched(entries, cfg, out / "parts", progress=False,
                                     devices=["cpu", "cpu"])
    assert sorted(r["video_id"] for r in results) == sorted(e.video_id for e in entries)
    events = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
    assert max(Counter(e["video_id"] for e in events).values()) == 1
    # (Which process computes what is a race: one of them may claim every video before the
    # other has started, so only exactly-once and the equal result are asserted.)
    write_manifest(cfg, out, entries, timing={})
    assert manifest_digests(out) == manifest_digests(ref)


def test_bad_batch_size_is_one_clear_error(mixed_root, tmp_path, monkeypatch):
    _batched(monkeypatch)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        run_flow_stage(_cfg(mixed_root, tmp_path, **{"flow.params": "{batch_size: 0}"}), False)
    with pytest.raises(ValueError, match=r"unknown flow.params key\(s\) \['flow.params.warp'\]"):
        run_flow_stage(_cfg(mixed_root, tmp_path, **{"flow.params": "{warp: 2}"}), False)


def _threads_in_worker(cfg):
    import cv2
    import torch
    flow_batch.pin_cpu_threads(cfg)
    return torch.get_num_threads(), cv2.getNumThreads()


@pytest.mark.parametrize("backend,method", [("multiprocessing", "tvl1_torch"),
                                            ("loky", "tvl1")])
def test_cpu_workers_times_threads_fit_the_cores(backend, method, tmp_path):
    """Forked workers inherit torch's every-core pool, and OpenCV's pool is every core in
    any worker (loky limits only OpenMP): each worker must get cores // workers threads."""
    import torch
    from joblib import Parallel, delayed
    cfg = _cfg(tmp_path, tmp_path, **{"flow.method": method, "pipeline.workers": 2})
    cores = flow_batch.cpu_threads(1)
    before = torch.get_num_threads()
    torch.set_num_threads(cores)  # torch's default in a fresh process, inherited by forks
    try:
        got = Parallel(n_jobs=2, backend=backend)(delayed(_threads_in_worker)(cfg)
                                                  for _ in range(2))
    finally:
        torch.set_num_threads(before)
    which = 0 if method == "tvl1_torch" else 1
    assert all(g[which] == max(1, cores // 2) for g in got), got
    assert 2 * got[0][which] <= max(cores, 2)


def test_cuda_devices_are_one_process_each():
    assert flow_batch.devices_for("cpu") == ["cpu"]
    assert flow_batch.devices_for("cuda:1") == ["cuda:1"]
    cfg = load_config(None, ["flow.method=tvl1_torch", "flow.device=cuda"])
    assert flow_batch.wanted(cfg)
    assert not flow_batch.wanted(load_config(None, ["flow.method=tvl1", "flow.device=cuda"]))
    assert not flow_batch.wanted(load_config(None, ["flow.method=tvl1_torch",
                                                    "flow.device=cpu"]))


def test_cuda_without_a_gpu_is_one_clear_error(mixed_root, tmp_path):
    import torch
    from motionclr.errors import UserError
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    cfg = _cfg(mixed_root, tmp_path, **{"flow.device": "cuda"})
    with pytest.raises(UserError, match="flow.device=cuda but CUDA is not available here"):
        run_flow_stage(cfg, progress=False)
    assert not list(tmp_path.rglob("*.claim"))  # nothing was claimed
