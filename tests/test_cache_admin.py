"""`motionclr cache ls|gc`, and the note when only library versions changed (issue #14, item 8)."""
import json
import os
import subprocess
import sys
import time

from motionclr.config import load_config
from motionclr.pipeline import cache_admin
from motionclr.pipeline.flow_stage import run_flow_stage
from tests.conftest import tiny_overrides


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "motionclr", *args], capture_output=True,
                          text=True, timeout=300)


def _age(path, days):
    """Set every file's mtime ``days`` back (what an idle stage looks like)."""
    t = time.time() - days * 86400
    for p in [path, *path.rglob("*")]:
        os.utime(p, (t, t))


def test_ls_shows_each_stage_and_gc_follows_its_policy(tiny_root, tmp_path):
    cache = tmp_path / "cache"
    over = tiny_overrides(tiny_root, cache, **{"data.limit": 2})
    done = run_flow_stage(load_config(None, over), progress=False)
    # an unfinished stage: what a run killed before packing leaves behind
    other = run_flow_stage(load_config(None, over + ["flow.method=farneback",
                                                     "pipeline.shard=0/2"]), progress=False)
    assert not (other / "manifest.json").exists()
    man = json.loads((done / "manifest.json").read_text())

    res = _cli("cache", "ls", str(cache))
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert f"{done}  synthetic  {load_config(None, over).flow.method}  short_side=32" in out
    assert f"{other}  synthetic  farneback" in out
    assert f"complete: {len(man['videos'])} ok, 0 failed" in out
    assert "unfinished: 1 ok, 0 failed" in out          # one of its 2 videos was done
    assert "last used just now" in out and "2 stage(s)" in out

    # A fresh unfinished stage may be a live run: gc keeps it; idle for 2 days, it goes.
    assert "removed 0 stage(s)" in _cli("cache", "gc", str(cache)).stdout
    _age(other, 2)
    _age(done, 40)
    dry = _cli("cache", "gc", str(cache), "--dry-run").stdout
    assert f"would remove {other} (unfinished, idle 2.0 days" in dry
    assert str(done) not in dry and other.is_dir()
    gone = _cli("cache", "gc", str(cache)).stdout
    assert f"removed {other}" in gone and not other.exists() and done.is_dir()
    # finished stages only on request, by days since last use; a use resets the clock
    run_flow_stage(load_config(None, over), progress=False)       # cache hit = a use
    assert "removed 0 stage(s)" in _cli("cache", "gc", str(cache), "--unused-days", "30").stdout
    _age(done, 40)
    out = _cli("cache", "gc", str(cache), "--unused-days", "30").stdout
    assert f"removed {done} (unused for 40.0 days" in out and not done.exists()


def test_a_stage_that_differs_only_by_library_versions_is_named(tiny_root, tmp_path, capfd):
    cache = tmp_path / "cache"
    cfg = load_config(None, tiny_overrides(tiny_root, cache, **{"data.limit": 2}))
    stage = run_flow_stage(cfg, progress=False)
    # Pretend the existing stage was computed with another OpenCV, as after an upgrade.
    meta = json.loads((stage / "stage.json").read_text())
    real = meta["versions"]["opencv"]
    meta["versions"]["opencv"] = "4.0.0"
    old = stage.with_name("flow-000000000000")
    stage.rename(old)
    (old / "stage.json").write_text(json.dumps(meta))
    capfd.readouterr()
    again = run_flow_stage(cfg, progress=False)
    err = capfd.readouterr().err
    assert again == stage and (again / "manifest.json").is_file()
    line = [x for x in err.splitlines() if x.startswith("note:")]
    assert len(line) == 1 and str(old) in line[0] and f"opencv 4.0.0 -> {real}" in line[0]
    assert "ffmpeg" not in line[0]                      # only what differs is named
    # a changed flow setting is a different stage, not a version change: no note
    run_flow_stage(load_config(None, tiny_overrides(tiny_root, cache, **{
        "data.limit": 2, "flow.bound": 10})), progress=False)
    assert "note:" not in capfd.readouterr().err
