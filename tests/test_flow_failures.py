"""Two kinds of error (docs/reliability.md): config and machine faults stop the run before
or without recording anything; a video's faults are recorded and the run goes on; every run
ends with ``N packed, M failed`` and a non-zero exit when nothing usable was written."""
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from motionclr.config import load_config
from motionclr.datasets.sources import list_videos
from motionclr.datasets.synthetic import generate
from motionclr.errors import EnvironmentFailure, StorageError
from motionclr.flow import FLOW_METHODS
from motionclr.storage import shards
from motionclr.pipeline.cache import pid_alive
from motionclr.pipeline.flow_stage import PACK_LOCK, process_video, run_flow_stage, stage_dir
from motionclr.pipeline.verify import verify_stage
from tests.conftest import manifest_digests, tiny_overrides


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("syn"), groups=2, clips=1, n_frames=6,
                    size=(64, 48))


def _flow(*over):
    return subprocess.run([sys.executable, "-m", "motionclr", "flow", *over],
                          capture_output=True, text=True)


@pytest.mark.parametrize("bad,says", [
    ("flow.method=tvl2", "unknown flow method 'tvl2'; valid:"),
    ("flow.params.levelz=3", "flow.params.levelz"),
    ("flow.params.warps=many", "flow.params.warps: expected int"),
    ("decode.short_side=-1", "decode.short_side must be >= 0"),
    ("pipeline.compression=zstd", "pipeline.compression must be one of"),
])
def test_bad_flow_config_fails_before_any_work(root, tmp_path, bad, says):
    res = _flow(*tiny_overrides(root, tmp_path / "c"), bad)
    assert res.returncode == 2, res.stderr
    assert says in res.stderr and len(res.stderr.strip().splitlines()) == 1
    if "levelz" in bad:  # the valid keys are listed
        assert "nscales" in res.stderr and "warps" in res.stderr
    assert not (tmp_path / "c").exists()          # nothing decoded, nothing written


def test_cuda_asked_for_but_absent_is_one_line_before_decoding(root, tmp_path):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    res = _flow(*tiny_overrides(root, tmp_path / "c"), "flow.method=tvl1_torch",
                "flow.device=cuda")
    assert res.returncode == 2
    assert "CUDA is not available" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "c").exists()


def test_torch_device_is_part_of_the_stage_key(root, tmp_path):
    entries = list_videos("synthetic", str(root), 1)
    key = {d: stage_dir(load_config(None, tiny_overrides(root, tmp_path, **{
        "flow.method": "tvl1_torch", "flow.device": d})), entries) for d in
        ("cpu", "cuda", "cuda:1")}
    assert key["cpu"] != key["cuda"] and key["cuda"] == key["cuda:1"]
    # The OpenCV engines run on the CPU whatever flow.device says: one stage.
    cv = {d: stage_dir(load_config(None, tiny_overrides(root, tmp_path, **{
        "flow.method": "tvl1", "flow.device": d})), entries) for d in ("cpu", "cuda")}
    assert cv["cpu"] == cv["cuda"]


def test_missing_raft_checkpoint_is_an_environment_error(root, tmp_path):
    missing = tmp_path / "raft_small_C_T_V2.pth"
    over = tiny_overrides(root, tmp_path / "c", **{
        "flow.method": "raft_small", "flow.params.checkpoint": str(missing),
        "decode.short_side": 128, "data.limit": 2})
    res = _flow(*over)                               # checked before any work
    assert res.returncode == 2 and "no such file" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "c").exists()
    # Removed while the stage runs: the worker stops the run and records nothing.
    cfg = load_config(None, over)
    entry = list_videos("synthetic", str(root), 1)[0]
    parts = tmp_path / "parts"
    parts.mkdir()
    with pytest.raises(EnvironmentFailure, match="no such file.*nothing was cached"):
        process_video(entry, cfg, parts)
    assert list(parts.iterdir()) == []               # no .failed.json, no claim left


def oom_once_engine(frames, device="cpu", **params):
    """Farneback flow, except while MOTIONCLR_TEST_OOM names an existing file: then the
    machine "runs out of GPU memory" (torch's own exception class)."""
    import torch
    from motionclr.flow.opencv import farneback
    if os.path.exists(os.environ.get("MOTIONCLR_TEST_OOM", "/nonexistent")):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    return farneback(frames, device=device, **params)


def test_environment_error_stops_run_marks_nothing_and_caches_nothing(root, tmp_path,
                                                                      monkeypatch):
    monkeypatch.setitem(FLOW_METHODS, "oom_once", "tests.test_flow_failures:oom_once_engine")
    flag = tmp_path / "oom"
    flag.touch()
    monkeypatch.setenv("MOTIONCLR_TEST_OOM", str(flag))
    cfg = load_config(None, tiny_overrides(root, tmp_path / "c", **{"flow.method": "oom_once"}))
    with pytest.raises(EnvironmentFailure, match="OutOfMemoryError: CUDA out of memory"):
        run_flow_stage(cfg, progress=False)
    stage = next((tmp_path / "c").glob("synthetic/flow-*"))
    assert not (stage / "manifest.json").exists()
    assert not list((stage / "parts").glob("*.failed.json"))
    assert not list((stage / "parts").glob("*.claim"))
    flag.unlink()                                    # the machine is fixed: rerun
    assert run_flow_stage(cfg, progress=False) == stage
    man = json.loads((stage / "manifest.json").read_text())
    assert len(man["videos"]) == 16 and man["failed"] == []


def test_read_only_parts_dir_stops_the_run_without_blaming_the_video(root, tmp_path):
    cfg = load_config(None, tiny_overrides(root, tmp_path / "c"))
    entry = list_videos("synthetic", str(root), 1)[0]
    parts = tmp_path / "parts"
    parts.mkdir()
    if subprocess.run(["chattr", "+i", str(parts)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not supported on this filesystem")
    try:
        with pytest.raises(StorageError, match="cannot write to"):
            process_video(entry, cfg, parts)
    finally:
        subprocess.run(["chattr", "-i", str(parts)])
    assert list(parts.iterdir()) == []


def test_summary_exit_codes_verify_and_retry_failed(root, tmp_path):
    """Every video times out: the run says 0 packed, exits 1, verify flags the stage; after
    the fix, --retry-failed computes exactly those videos and the cache hit reports it."""
    over = tiny_overrides(root, tmp_path / "c")
    res = _flow(*over, "decode.timeout=0.001")
    assert res.returncode == 1, res.stderr
    assert "flow: 0 packed, 16 failed" in res.stdout and "16 x ffmpeg probe timed out" in \
        res.stdout
    assert "nothing was packed" in res.stderr
    stage = next((tmp_path / "c").glob("synthetic/flow-*"))
    assert any("0 videos packed" in p for p in verify_stage(stage))
    ver = subprocess.run([sys.executable, "-m", "motionclr", "verify", str(stage)],
                         capture_output=True, text=True)
    assert ver.returncode == 1 and "16 video(s) recorded as failed" in ver.stdout
    hit = _flow(*over)                               # the timeout is not in the key: cache hit
    assert hit.returncode == 1 and "cache hit" in hit.stdout and "0 packed" in hit.stdout
    retry = _flow(*over, "--retry-failed")
    assert retry.returncode == 0, retry.stderr
    assert "flow: 16 packed, 0 failed" in retry.stdout
    assert verify_stage(stage) == []
    again = _flow(*over)
    assert again.returncode == 0 and "cache hit" in again.stdout and "16 packed" in again.stdout
    reference = run_flow_stage(load_config(None, tiny_overrides(root, tmp_path / "r")), False)
    assert manifest_digests(stage) == manifest_digests(reference)


def test_retry_failed_before_packing_recomputes_the_ledgers_failures(root, tmp_path):
    over = tiny_overrides(root, tmp_path / "c", **{"pipeline.shard": "0/2"})
    run_flow_stage(load_config(None, over + ["decode.timeout=0.001"]), False)
    stage = next((tmp_path / "c").glob("synthetic/flow-*"))
    assert len(list((stage / "parts").glob("*.failed.json"))) == 8
    run_flow_stage(load_config(None, over), False, retry_failed=True)
    assert len(list((stage / "parts").glob("*.h5"))) == 8
    assert not list((stage / "parts").glob("*.failed.json"))


def _zombie():
    """A child that has exited and is not reaped: ``kill(pid, 0)`` still succeeds on it."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.time() + 30
    while time.time() < deadline:
        stat = open(f"/proc/{child.pid}/stat").read()
        if stat[stat.rindex(")") + 2] == "Z":
            return child
        time.sleep(0.02)
    raise AssertionError("the child never became a zombie")


def test_pack_lock_of_a_zombie_is_taken_over(root, tmp_path):
    child = _zombie()
    try:
        os.kill(child.pid, 0)                        # what the old check relied on
        assert not pid_alive(child.pid) and pid_alive(os.getpid())
        cfg = load_config(None, tiny_overrides(root, tmp_path / "c"))
        stage = stage_dir(cfg, list_videos("synthetic", str(root), 1))
        (stage / "parts").mkdir(parents=True)
        lock = stage / "parts" / f"{shards.video_key(PACK_LOCK)}.claim"
        lock.write_text(json.dumps({"host": socket.gethostname(), "pid": child.pid,
                                    "time": time.time()}))
        assert run_flow_stage(cfg, progress=False) == stage
        assert len(json.loads((stage / "manifest.json").read_text())["videos"]) == 16
    finally:
        child.wait()
