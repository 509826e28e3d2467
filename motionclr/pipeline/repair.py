"""`motionclr verify --repair STAGE`: recompute exactly the damaged videos of a stage.

``verify_stage`` names the videos whose data is missing or differs from its checksums;
each is decoded and its flow computed again from its source video (the path recorded in
the shard, else the dataset listing) with the stage's own settings (``stage.json``), then
every shard holding one is rewritten under a new name with the other videos copied as
they are, a new checksum file is written, and the manifest is replaced last (atomically):
a reader sees the old stage or the repaired one, and an interrupted repair leaves only
files the manifest does not name (the next repair removes them).
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import h5py

from motionclr.config import Config, load_config
from motionclr.errors import UserError
from motionclr.storage import FrameSums, load_manifest
from motionclr.storage.checksums import frame_sums, write_checksums
from motionclr.storage.shards import part_status, read_failure, repack_shard, save_manifest, \
    video_key


def stage_config(stage_dir: Path, overrides: list[str] | None = None) -> Config:
    """The config a stage was computed with (``stage.json``), then ``overrides``."""
    path = Path(stage_dir) / "stage.json"
    if not path.is_file():
        raise UserError(f"{stage_dir} has no stage.json: cannot tell how it was computed")
    st = json.loads(path.read_text())
    cfg = load_config(None, overrides)
    cfg.data.dataset, cfg.data.root = st["dataset"], st["root"]
    cfg.decode.short_side, cfg.decode.fps, cfg.decode.max_frames = (
        st["decode"]["short_side"], st["decode"]["fps"], st["decode"]["max_frames"])
    cfg.flow.method, cfg.flow.bound, cfg.flow.params = (
        st["flow"]["method"], st["flow"]["bound"], dict(st["flow"]["params"]))
    cfg.pipeline.compression = st["storage"]["compression"]
    cfg.pipeline.time_phases = st["storage"]["time_phases"]
    return cfg


def _source(stage_dir: Path, v: dict, cfg: Config) -> Path:
    """The video file of manifest record ``v``: as recorded in its shard, else as listed."""
    try:
        with h5py.File(stage_dir / v["shard"], "r") as f:
            return Path(str(f["videos"][v["video_id"]].attrs["source_path"]))
    except (OSError, KeyError):
        from motionclr.datasets.sources import list_videos
        for e in list_videos(cfg.data.dataset, cfg.data.root, 1):
            if e.video_id == v["video_id"]:
                return e.path
    raise UserError(f"cannot find the source video of {v['video_id']}")


def repair_stage(stage_dir: str | Path, overrides: list[str] | None = None,
                 progress: bool = True) -> dict:
    """Recompute the damaged videos of ``stage_dir``. Returns ``{"videos": ids recomputed,
    "checksums": whether the checksum file was rewritten}`` (both empty/False: healthy)."""
    from motionclr.datasets.sources import VideoEntry
    from motionclr.pipeline.flow_stage import process_video
    from motionclr.pipeline.verify import _checksum_file, verify_stage

    stage_dir = Path(stage_dir)
    damaged: list[str] = []
    verify_stage(stage_dir, checksums=True, damaged=damaged)
    man = load_manifest(stage_dir)
    ok_sums = not _checksum_file(stage_dir, man)
    named = {v["shard"] for v in man["videos"]} | {man["checksums"]["file"]}
    for p in list(stage_dir.glob("shard-*.h5")) + list(stage_dir.glob("checksums-*.npy")):
        if p.name not in named:  # left by an interrupted repair
            p.unlink()
    if not damaged and ok_sums:
        return {"videos": [], "checksums": False}
    damaged = list(dict.fromkeys(damaged))
    cfg = stage_config(stage_dir, overrides)
    records = {v["video_id"]: v for v in man["videos"]}
    # A staging ledger of its own: the stage is finished (its manifest exists), and
    # process_video treats a video of a finished stage as packed already.
    staging = stage_dir / f".repair.{os.getpid()}"  # a directory: not a ``*.tmp`` file
    parts_dir = staging / "parts"
    parts_dir.mkdir(parents=True, exist_ok=True)
    replaced: dict[str, Path] = {}
    for vid in damaged:
        v = records[vid]
        for p in parts_dir.glob(f"{video_key(vid)}.*"):
            p.unlink()
        entry = VideoEntry(path=_source(stage_dir, v, cfg), video_id=vid, label=v["label"],
                           label_name=v.get("label_name", ""), subset="",
                           group=v.get("group"))
        if progress:
            print(f"repair: recomputing {vid} from {entry.path}")
        process_video(entry, cfg, parts_dir)
        if part_status(parts_dir, vid) != "done":
            reason = read_failure(parts_dir, vid)["reason"] \
                if part_status(parts_dir, vid) == "failed" else "no output"
            shutil.rmtree(staging, ignore_errors=True)
            raise UserError(f"repair: {vid} could not be recomputed ({reason}); the stage "
                            "is unchanged")
        replaced[vid] = parts_dir / f"{video_key(vid)}.h5"

    # Checksums of untouched videos: from the current file (checked by verify above), or,
    # when that file is the damaged part, from their data (verified against its blake2b).
    if ok_sums:
        old = FrameSums(stage_dir, man)
        sums = {vid: {m: old.get((vid, m)) for m in ("rgb", "flow")} for vid in records}
    else:
        sums = {}
        for v in man["videos"]:
            if v["video_id"] not in replaced:
                with h5py.File(stage_dir / v["shard"], "r") as f:
                    g = f["videos"][v["video_id"]]
                    sums[v["video_id"]] = {m: frame_sums(g[m][()]) for m in ("rgb", "flow")}
    by_shard: dict[str, list[dict]] = {}
    for v in man["videos"]:
        by_shard.setdefault(v["shard"], []).append(v)
    last = max((int(m.group(1)) for s in by_shard
                if (m := re.match(r"shard-(\d+)\.h5$", s))), default=-1)
    old_shards = []
    for shard, vs in sorted(by_shard.items()):
        if not any(v["video_id"] in replaced for v in vs):
            continue
        last += 1
        sums.update(repack_shard(stage_dir, vs, replaced, f"shard-{last:05d}.h5",
                                 int(cfg.pipeline.time_phases)))
        old_shards.append(shard)
    old_file = man["checksums"]["file"]
    sums = {k: {m: a[()] for m, a in s.items()} for k, s in sums.items()}
    man["checksums"] = write_checksums(stage_dir, man["videos"], sums)
    save_manifest(stage_dir, man)  # the switch: from here on readers see the repaired stage
    for shard in old_shards:
        (stage_dir / shard).unlink(missing_ok=True)
    if old_file != man["checksums"]["file"]:
        (stage_dir / old_file).unlink(missing_ok=True)
    shutil.rmtree(staging, ignore_errors=True)
    left = stage_dir / "parts"  # the finished stage's emptied ledger, if any
    if left.is_dir() and not any(left.iterdir()):
        left.rmdir()
    return {"videos": damaged, "checksums": True}
