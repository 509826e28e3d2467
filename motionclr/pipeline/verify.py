"""`motionclr verify CACHE_DIR`: check every shard against the manifest.

For each video of the manifest: the shard exists and opens, the group is there, ``rgb`` has
the recorded frame count and ``flow`` one less, and the arrays' blake2b equals the one
recorded when they were written. Also reports shards the manifest does not name and
temporary files left behind. Returns the list of problems (empty = healthy).
"""
from __future__ import annotations

from pathlib import Path

import h5py

from motionclr.pipeline.shards import content_digest, load_manifest


def verify_stage(stage_dir: str | Path, checksums: bool = True) -> list[str]:
    stage_dir = Path(stage_dir)
    try:
        man = load_manifest(stage_dir)
    except (FileNotFoundError, ValueError) as e:
        return [str(e)]
    problems: list[str] = []
    if not man["videos"]:  # a stage every video failed in is not a usable cache
        failed = man.get("failed", [])
        why = f": {failed[0].get('reason', '')}" if failed else ""
        problems.append(f"0 videos packed ({len(failed)} failed{why})")
    by_shard: dict[str, list[dict]] = {}
    for v in man["videos"]:
        by_shard.setdefault(v["shard"], []).append(v)
    for shard, videos in sorted(by_shard.items()):
        path = stage_dir / shard
        if not path.is_file():
            problems.append(f"{shard}: missing ({len(videos)} videos)")
            continue
        try:
            f = h5py.File(path, "r")
        except OSError as e:
            problems.append(f"{shard}: cannot be opened ({e})")
            continue
        with f:
            for v in videos:
                vid = v["video_id"]
                if vid not in f.get("videos", {}):
                    problems.append(f"{shard}: video {vid} missing")
                    continue
                g = f["videos"][vid]
                n = v["n_frames"]
                if g["rgb"].shape[0] != n or g["flow"].shape[0] != n - 1:
                    problems.append(f"{vid}: frames rgb {g['rgb'].shape[0]} / flow "
                                    f"{g['flow'].shape[0]}, manifest says {n} / {n - 1}")
                    continue
                if checksums and v.get("content_blake2b"):
                    try:
                        digest = content_digest(g["rgb"][()], g["flow"][()])
                    except OSError as e:
                        problems.append(f"{vid}: unreadable ({e})")
                        continue
                    if digest != v["content_blake2b"]:
                        problems.append(f"{vid}: checksum mismatch")
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
        failed = load_manifest(stage_dir).get("failed", [])
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
