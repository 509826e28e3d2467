"""Sharing one flow stage between processes: claims, identical outputs, verify."""
import json
import os
import subprocess
import sys
from collections import Counter

import h5py
import pytest

from motionclr.config import load_config
from motionclr.datasets.synthetic import generate
from motionclr.pipeline import claims
from motionclr.storage import shards
from motionclr.pipeline.flow_stage import run_flow_stage
from motionclr.pipeline.verify import verify_cache, verify_stage
from tests.conftest import manifest_digests, tiny_overrides


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("syn"), groups=2, clips=1, n_frames=8,
                    size=(48, 32))



def _events(stage):
    return [json.loads(x) for x in (stage / "events.jsonl").read_text().splitlines()]


def test_identical_outputs_however_split(root, tmp_path):
    whole = run_flow_stage(load_config(None, tiny_overrides(root, tmp_path / "a")), False)
    over = tiny_overrides(root, tmp_path / "b")
    for i in (1, 0, 2):
        sliced = run_flow_stage(load_config(None, over + [f"pipeline.shard={i}/3"]), False)
    assert manifest_digests(sliced) == manifest_digests(whole)
    assert len(manifest_digests(whole)) == 16
    # Two concurrent processes on one directory: each video computed exactly once.
    over_c = tiny_overrides(root, tmp_path / "c")
    procs = [subprocess.Popen([sys.executable, "-m", "motionclr", "flow", *over_c],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for _ in range(2)]
    assert all(p.wait(timeout=300) == 0 for p in procs)
    conc = run_flow_stage(load_config(None, over_c), False)  # packs if neither did
    assert manifest_digests(conc) == manifest_digests(whole)
    done = Counter(e["video_id"] for e in _events(conc) if e["status"] == "done")
    assert set(done.values()) == {1} and len(done) == 16    # never computed twice
    # (How the 16 videos split between the two processes depends on start-up timing;
    # claims themselves are tested deterministically in the next test.)


def test_dead_workers_claim_is_taken_over(root, tmp_path):
    cfg = load_config(None, tiny_overrides(root, tmp_path / "d", **{"data.limit": 2}))
    from motionclr.datasets.sources import limit_entries, list_videos
    from motionclr.pipeline.flow_stage import stage_dir
    entries = limit_entries(list_videos("synthetic", root), 2)
    out = stage_dir(cfg, entries)
    (out / "parts").mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    import socket
    claim = out / "parts" / f"{shards.video_key(entries[0].video_id)}.claim"
    claim.write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead), "time": 0}))
    assert claims.claim(out / "parts", entries[0].video_id)  # stale: taken over
    claims.release(out / "parts", entries[0].video_id)
    claim.write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead), "time": 0}))
    run_flow_stage(cfg, False)
    assert len(manifest_digests(out)) == 2 and not claim.exists()
    # A live claim (this process, another "worker") is respected.
    assert claims.claim(out / "parts", "x") and claims.claim(out / "parts", "x")
    live = out / "parts" / f"{shards.video_key('y')}.claim"
    live.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getppid(),
                                "time": 1e18}))
    assert not claims.claim(out / "parts", "y")


def test_verify_finds_corruption_missing_and_leftovers(root, tmp_path):
    stage = run_flow_stage(load_config(None, tiny_overrides(root, tmp_path / "e",
                                                            **{"data.limit": 3})), False)
    assert verify_stage(stage) == []
    man = json.loads((stage / "manifest.json").read_text())
    v = man["videos"][1]
    with h5py.File(stage / v["shard"], "r+") as f:
        f["videos"][v["video_id"]]["flow"][0, 0, 0, 0] ^= 0xFF
    (stage / "shard-00000.h5.123.tmp").write_bytes(b"")
    problems = verify_cache(tmp_path / "e")[str(stage)]
    assert any("checksum mismatch" in p and v["video_id"] in p for p in problems)
    assert any("temporary file" in p for p in problems)
    os.rename(stage / v["shard"], stage / "moved.h5")
    assert any("missing" in p for p in verify_stage(stage))
    res = subprocess.run([sys.executable, "-m", "motionclr", "verify", str(stage)],
                         capture_output=True, text=True)
    assert res.returncode == 1 and "problem" in res.stdout


def test_dask_backend_gives_identical_outputs(root, tmp_path):
    pytest.importorskip("dask.distributed")
    whole = run_flow_stage(load_config(None, tiny_overrides(root, tmp_path / "a")), False)
    over = tiny_overrides(root, tmp_path / "dask") + ["pipeline.backend=dask",
                                                       "pipeline.workers=2"]
    stage = run_flow_stage(load_config(None, over), False)
    assert manifest_digests(stage) == manifest_digests(whole)
    assert os.getpid() not in {e["pid"] for e in _events(stage)}  # ran in dask workers


def test_unknown_backend_lists_valid(root, tmp_path):
    with pytest.raises(ValueError, match="dask"):
        run_flow_stage(load_config(None, tiny_overrides(root, tmp_path / "x") +
                                   ["pipeline.backend=spark"]), False)
