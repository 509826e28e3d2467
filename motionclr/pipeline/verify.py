"""`motionclr verify CACHE_DIR`: check every shard against the manifest.

For each video of the manifest: the shard exists and opens, the group is there, ``rgb`` has
the recorded frame count and ``flow`` one less, and the arrays' blake2b equals the one
recorded when they were written, as do the per-frame checksums that readers check
(their file intact, every frame's sum equal). Also reports a stage of an older format,
shards the manifest does not name and temporary files left behind. Returns the list of
problems (empty = healthy). ``motionclr verify --repair`` recomputes the damaged videos
(``motionclr.pipeline.repair``).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import h5py
import numpy as np

from motionclr.storage import FORMAT_VERSION, FrameSums
from motionclr.storage.checksums import frame_sums
from motionclr.storage.shards import content_digest, load_manifest


def _checksum_file(stage_dir: Path, man: dict) -> list[str]:
    entry = man.get("checksums") or {}
    path = stage_dir / entry.get("file", "checksums-?.npy")
    if not path.is_file():
        return [f"{path.name}: frame checksums missing"]
    arr = np.load(path)
    if hashlib.blake2b(arr.astype("<u8").tobytes(), digest_size=16).hexdigest() != \
            entry.get("blake2b"):
        return [f"{path.name}: frame checksums damaged"]
    return []


def verify_stage(stage_dir: str | Path, checksums: bool = True,
                 damaged: list | None = None) -> list[str]:
    """Problems of one stage; ``damaged`` (a list) receives the ids of videos whose data
    is missing or damaged (what ``--repair`` recomputes)."""
    stage_dir = Path(stage_dir)
    damaged = [] if damaged is None else damaged
    try:
        man = load_manifest(stage_dir, any_version=True)
    except (FileNotFoundError, ValueError) as e:
        return [str(e)]
    if man.get("format_version") != FORMAT_VERSION:
        return [f"storage format {man.get('format_version')}, this motionclr reads "
                f"{FORMAT_VERSION} (per-frame checksums): run `motionclr flow` again"]
    problems: list[str] = _checksum_file(stage_dir, man)
    if not man["videos"]:  # a stage every video failed in is not a usable cache
        failed = man.get("failed", [])
        why = f": {failed[0].get('reason', '')}" if failed else ""
        problems.append(f"0 videos packed ({len(failed)} failed{why})")
    sums = FrameSums(stage_dir, man) if not problems else None
    by_shard: dict[str, list[dict]] = {}
    for v in man["videos"]:
        by_shard.setdefault(v["shard"], []).append(v)
    for shard, videos in sorted(by_shard.items()):
        path = stage_dir / shard
        if not path.is_file():
            problems.append(f"{shard}: missing ({len(videos)} videos)")
            damaged += [v["video_id"] for v in videos]
            continue
        try:
            f = h5py.File(path, "r")
        except OSError as e:
            problems.append(f"{shard}: cannot be opened ({e})")
            damaged += [v["video_id"] for v in videos]
            continue
        with f:
            for v in videos:
                vid = v["video_id"]
                if vid not in f.get("videos", {}):
                    problems.append(f"{shard}: video {vid} missing")
                    damaged.append(vid)
                    continue
                g = f["videos"][vid]
                n = v["n_frames"]
                if g["rgb"].shape[0] != n or g["flow"].shape[0] != n - 1:
                    problems.append(f"{vid}: frames rgb {g['rgb'].shape[0]} / flow "
                                    f"{g['flow'].shape[0]}, manifest says {n} / {n - 1}")
                    damaged.append(vid)
                    continue
                if checksums and v.get("content_blake2b"):
                    try:
                        rgb, flow = g["rgb"][()], g["flow"][()]
                    except OSError as e:
                        problems.append(f"{vid}: unreadable ({e})")
                        damaged.append(vid)
                        continue
                    frames_ok = sums is None or all(
                        np.array_equal(frame_sums(a), sums.get((vid, m)))
                        for m, a in (("rgb", rgb), ("flow", flow)))
                    if content_digest(rgb, flow) != v["content_blake2b"] or not frames_ok:
                        problems.append(f"{vid}: checksum mismatch")
                        damaged.append(vid)
    problems += [f"{p.name}: checksum file not in the manifest"
                 for p in sorted(stage_dir.glob("checksums-*.npy"))
                 if p.name != (man.get("checksums") or {}).get("file")]
    named = set(by_shard)
    problems += [f"{p.name}: shard not in the manifest" for p in sorted(stage_dir.glob("shard-*.h5"))
                 if p.name not in named]
    problems += [f"{p.relative_to(stage_dir)}: temporary file left behind"
                 for p in sorted(stage_dir.rglob("*.tmp"))]
    return problems


def stage_failures(stage_dir: str | Path, top: int = 3) -> list[str]:
    """The stage's recorded failed videos: a count and the most common reasons."""
    from motionclr.pipeline.failures import top_reasons
    try:
        failed = load_manifest(stage_dir, any_version=True).get("failed", [])
    except (FileNotFoundError, ValueError):
        return []
    if not failed:
        return []
    return [f"{len(failed)} video(s) recorded as failed:"] + \
        [f"  {n} x {reason}" for reason, n in top_reasons(failed, top)]


def verify_cache(path: str | Path, checksums: bool = True) -> dict[str, list[str]]:
    """Verify one stage directory, or every ``flow-*`` stage below ``path``."""
    path = Path(path)
    stages = [path] if (path / "manifest.json").is_file() or path.name.startswith("flow-") \
        else sorted(p.parent for p in path.rglob("flow-*/manifest.json"))
    if not stages:
        return {str(path): ["no flow stage (manifest.json) found here"]}
    return {str(s): verify_stage(s, checksums) for s in stages}
