"""The `flow` stage: decode every video, compute flow, pack HDF5 shards, write a manifest.

Work is per video and idempotent: a finished video is a file in ``parts/`` (or a
``.failed.json`` with its reason), so an interrupted run resumes where it stopped and
several processes (``--shard i/n``) can share one directory. When every video has an
outcome, the parts are packed into shards and ``manifest.json`` is written last: its
presence marks the stage complete, and a later run with the same config is a no-op.
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import json
import time
from pathlib import Path

import numpy as np

from motionclr.config import Config
from motionclr.errors import UserError
from motionclr.datasets.sources import SOURCES, VideoEntry, limit_entries, list_videos
from motionclr.pipeline import shards
from motionclr.pipeline.cache_admin import note_version_only_change, touch_used
from motionclr.pipeline.cache import (FORMAT_VERSION, atomic_write_text, file_digest,
                                      remove_stale_tmp, stable_hash)
from motionclr.pipeline.decode import DecodeError, decode_video, ffmpeg_version

TORCH_METHODS = ("tvl1_torch", "raft_small", "raft_large")
PACK_LOCK = "__pack__"


def _version(pkg: str) -> str:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def library_versions(method: str) -> dict:
    """Versions of what changes the numbers: ffmpeg always, then the flow backend."""
    import cv2
    v = {"ffmpeg": ffmpeg_version(), "opencv": cv2.__version__, "numpy": np.__version__,
         "h5py": _version("h5py"), "format": FORMAT_VERSION}
    if method in TORCH_METHODS:
        v["torch"] = _version("torch")
        v["torchvision"] = _version("torchvision")
    return v


def stage_params(cfg: Config) -> dict:
    """Everything that determines the flow stage's output except the list of inputs."""
    return {"decode": {"short_side": cfg.decode.short_side, "fps": cfg.decode.fps,
                       "max_frames": cfg.decode.max_frames},
            "flow": {"method": cfg.flow.method, "bound": cfg.flow.bound,
                     "params": cfg.flow.params},
            "storage": {"compression": cfg.pipeline.compression,
                        "time_phases": cfg.pipeline.time_phases},
            "versions": library_versions(cfg.flow.method)}


def stage_dir(cfg: Config, entries: list[VideoEntry]) -> Path:
    """``<cache>/<dataset>/flow-<hash>``; inputs are identified by relative path and size."""
    inputs = sorted((e.video_id, e.path.stat().st_size if e.path.is_file() else -1)
                    for e in entries)
    key = stable_hash({"dataset": cfg.data.dataset, "inputs": inputs, **stage_params(cfg)})
    return Path(cfg.data.cache) / cfg.data.dataset / f"flow-{key}"


class StorageError(UserError):
    """The output directory cannot be written (full, read-only, quota): the run stops.

    Finished videos are kept; nothing half-written remains; rerun when the disk is fixed.
    """


@contextlib.contextmanager
def _storage(where: Path):
    try:
        yield
    except OSError as e:
        raise StorageError(f"cannot write to {where}: {e.strerror or e} — finished videos are "
                           "kept; fix the disk (space, permissions) and rerun") from e


def _event(parts_dir: Path, video_id: str, status: str, seconds: float, reason: str = ""):
    """Append one line to the stage's event log (who computed what, when, how long)."""
    import os
    import socket
    line = json.dumps({"video_id": video_id, "status": status, "host": socket.gethostname(),
                       "pid": os.getpid(), "time": time.time(), "seconds": round(seconds, 3),
                       **({"reason": reason} if reason else {})}) + "\n"
    # One write() of a short line with O_APPEND: lines from concurrent workers don't interleave.
    fd = os.open(parts_dir.parent / "events.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def process_video(entry: VideoEntry, cfg: Config, parts_dir: Path) -> dict:
    """Decode + flow + write one part. Never raises for a bad video: records the reason."""
    from motionclr.flow import compute_flow, quantize
    t0 = time.perf_counter()
    # Several processes may share this directory (job arrays, Ray/Dask): claim first, then
    # look again — another worker may have finished and released it in between.
    skipped = {"video_id": entry.video_id, "status": "skipped", "frames": 0, "seconds": 0.0}
    if shards.part_status(parts_dir, entry.video_id) or not shards.claim(parts_dir,
                                                                          entry.video_id):
        return skipped
    if shards.part_status(parts_dir, entry.video_id):
        shards.release(parts_dir, entry.video_id)
        return skipped
    try:
        if not entry.path.is_file():
            raise DecodeError(f"file not found: {entry.path}")
        digest = file_digest(entry.path)
        frames, info = decode_video(entry.path, short_side=cfg.decode.short_side,
                                    fps=cfg.decode.fps, timeout=cfg.decode.timeout,
                                    max_frames=cfg.decode.max_frames)
        if info["n_frames"] < 2:
            raise DecodeError(f"only {info['n_frames']} frame decoded: flow needs at least 2")
        flow = compute_flow(frames, method=cfg.flow.method, device=cfg.flow.device,
                            **cfg.flow.params)
        q = quantize(flow, cfg.flow.bound)
        attrs = {"source_path": str(entry.path), "source_blake2b": digest,
                 "n_frames": info["n_frames"], "fps": info["fps"],
                 "src_size": [info["src_width"], info["src_height"]],
                 "size": [info["width"], info["height"]],
                 "resize_short_side": cfg.decode.short_side,
                 "flow_method": cfg.flow.method, "flow_params": cfg.flow.params,
                 "bound": float(cfg.flow.bound), "versions": library_versions(cfg.flow.method),
                 "convention": shards.CONVENTION,
                 "flow_clipped_fraction": float(np.mean(np.abs(flow) > cfg.flow.bound))}
    except KeyboardInterrupt:
        shards.release(parts_dir, entry.video_id)
        raise
    except Exception as e:  # noqa: BLE001 - any failure of one video is recorded, run goes on
        reason = f"{type(e).__name__}: {e}" if not isinstance(e, DecodeError) else str(e)
        with _storage(parts_dir):
            shards.write_failure(parts_dir, entry.video_id, str(entry.path), reason)
            _event(parts_dir, entry.video_id, "failed", time.perf_counter() - t0, reason)
        shards.release(parts_dir, entry.video_id)
        return {"video_id": entry.video_id, "status": "failed", "reason": reason, "frames": 0,
                "seconds": time.perf_counter() - t0}
    try:
        # A write error is the disk's fault, not the video's: stop the run, record nothing.
        with _storage(parts_dir):
            shards.write_part(parts_dir, entry.video_id, frames, q, attrs,
                              compression=cfg.pipeline.compression)
            _event(parts_dir, entry.video_id, "done", time.perf_counter() - t0)
        return {"video_id": entry.video_id, "status": "done", "frames": info["n_frames"],
                "seconds": time.perf_counter() - t0}
    finally:
        shards.release(parts_dir, entry.video_id)


def parse_shard(spec: str) -> tuple[int, int] | None:
    if not spec:
        return None
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like i/n (e.g. 0/4), got {spec!r}") from None
    if not 0 <= i < n:
        raise ValueError(f"--shard {spec}: need 0 <= i < n")
    return i, n


BACKENDS = ("loky", "threading", "multiprocessing", "ray", "dask")


@contextlib.contextmanager
def cluster_backend(backend: str, address: str, n_jobs: int):
    """The joblib backend name, after joining (or starting) a Ray or Dask cluster.

    Every backend runs the same ``process_video`` on the same shared stage directory, so the
    outputs are identical however the work is spread.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown pipeline.backend {backend!r}; valid: {list(BACKENDS)}")
    if backend == "ray":
        try:
            import ray
            from ray.util.joblib import register_ray
        except ImportError:
            raise UserError("pipeline.backend=ray needs Ray: pip install 'motionclr[ray]'") \
                from None
        ray.init(address=address or None, ignore_reinit_error=True)
        register_ray()
        yield "ray"
    elif backend == "dask":
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:
            raise UserError("pipeline.backend=dask needs Dask: pip install 'motionclr[dask]'") \
                from None
        cluster = None if address else LocalCluster(n_workers=n_jobs, threads_per_worker=1,
                                                    processes=True, dashboard_address=None)
        with Client(address or cluster):
            yield "dask"
        if cluster is not None:
            cluster.close()
    else:
        yield backend


def _run_parallel(todo: list[VideoEntry], cfg: Config, parts_dir: Path, progress: bool) -> list:
    from joblib import Parallel, delayed, parallel_config
    from tqdm import tqdm

    results = []
    bar = tqdm(total=len(todo), unit="video", disable=not progress, desc="flow")
    frames, t0 = 0, time.perf_counter()
    n_jobs = max(1, cfg.pipeline.workers)
    with cluster_backend(cfg.pipeline.backend, cfg.pipeline.address, n_jobs) as backend, \
            parallel_config(backend=backend, n_jobs=n_jobs):
        gen = Parallel(return_as="generator_unordered")(
            delayed(process_video)(e, cfg, parts_dir) for e in todo)
        for r in gen:
            results.append(r)
            frames += r["frames"]
            dt = max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(videos_s=f"{len(results) / dt:.2f}", frames_s=f"{frames / dt:.1f}",
                            failed=sum(x["status"] == "failed" for x in results))
            bar.update(1)
    bar.close()
    return results


def run_flow_stage(cfg: Config, progress: bool = True) -> Path:
    """Run (or resume, or skip) the flow stage; returns the stage directory."""
    entries = list_videos(cfg.data.dataset, cfg.data.root, cfg.data.split, **cfg.data.options)
    entries = limit_entries(entries, cfg.data.limit)
    out = stage_dir(cfg, entries)
    if (out / "manifest.json").is_file():
        touch_used(out)
        if progress:
            print(f"flow: cache hit, {out} is complete")
        return out
    parts_dir = out / "parts"
    if not out.exists():
        note_version_only_change(out.parent, stage_params(cfg), str(cfg.data.root))
    with _storage(out):
        parts_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_tmp(parts_dir)
        remove_stale_tmp(out)
        atomic_write_text(out / "stage.json", json.dumps(
            {"stage": "flow", "dataset": cfg.data.dataset, "root": str(cfg.data.root),
             **stage_params(cfg)}, indent=1, default=str))

    mine = entries
    shard = parse_shard(cfg.pipeline.shard)
    if shard:
        mine = [e for i, e in enumerate(entries) if i % shard[1] == shard[0]]
    todo = [e for e in mine if shards.part_status(parts_dir, e.video_id) is None]
    if progress:
        print(f"flow: {len(entries)} videos, {len(mine) - len(todo)} already done, "
              f"{len(todo)} to compute with {cfg.flow.method} on {cfg.pipeline.workers} workers")
    t0 = time.perf_counter()
    results = _run_parallel(todo, cfg, parts_dir, progress) if todo else []
    wall = time.perf_counter() - t0

    pending = [e for e in entries if shards.part_status(parts_dir, e.video_id) is None]
    if pending:
        if progress:
            print(f"flow: {len(pending)} videos still pending (other slices or workers). "
                  "Run again without --shard to pack when all slices finish.")
        return out
    computed = [r for r in results if r["status"] != "skipped"]
    # One packer: processes finishing together must not both pack and delete parts.
    if not shards.claim(parts_dir, PACK_LOCK):
        if progress:
            print("flow: another process is packing this stage")
        return out
    try:
        with _storage(out):
            if not (out / "manifest.json").is_file():
                write_manifest(cfg, out, entries, timing={
                    "seconds": wall, "computed": len(computed),
                    "frames": sum(r["frames"] for r in computed)})
    finally:
        shards.release(parts_dir, PACK_LOCK)
    return out


def _split_membership(cfg: Config) -> dict:
    """video_id -> {split: subset} for every official split the source has files for."""
    member: dict[str, dict] = {}
    for split in (1, 2, 3):
        try:
            listed = SOURCES[cfg.data.dataset](cfg.data.root, split, **cfg.data.options)
        except (FileNotFoundError, ValueError):
            continue
        for e in listed:
            member.setdefault(e.video_id, {})[str(split)] = e.subset
    return member


def write_manifest(cfg: Config, out: Path, entries: list[VideoEntry], timing: dict) -> dict:
    parts_dir = out / "parts"
    done = [e for e in entries if shards.part_status(parts_dir, e.video_id) == "done"]
    failed = [shards.read_failure(parts_dir, e.video_id) for e in entries
              if shards.part_status(parts_dir, e.video_id) == "failed"]
    where = shards.pack_shards(out, [e.video_id for e in done], cfg.pipeline.shard_mb,
                               cfg.pipeline.time_phases)
    member = _split_membership(cfg)
    import h5py
    videos = []
    for e in done:
        with h5py.File(out / where[e.video_id], "r") as f:
            g = f["videos"][e.video_id]
            n, h, w = g["rgb"].shape[:3]
            fps = float(g.attrs["fps"])
            digest = str(g.attrs["content_blake2b"])
            # Chunk byte offsets, so readers skip HDF5's metadata reads (cold-read latency).
            layout = shards.chunk_layout(g)
        videos.append({"video_id": e.video_id, "shard": where[e.video_id], "n_frames": int(n),
                       "height": int(h), "width": int(w), "fps": fps, "label": e.label,
                       "label_name": e.label_name, "group": e.group,
                       "content_blake2b": digest, "layout": layout,
                       "splits": member.get(e.video_id, {str(cfg.data.split): e.subset})})
    # Unlabelled test videos carry -1, and a class may have no video: index by label.
    names = {e.label: e.label_name for e in entries if e.label >= 0}
    classes = [names.get(i, "") for i in range(max(names, default=-1) + 1)]
    manifest = {"format_version": FORMAT_VERSION, "stage": "flow", "dataset": cfg.data.dataset,
                "bound": cfg.flow.bound, "params": stage_params(cfg),
                "classes": classes, "videos": videos, "failed": failed,
                "timing": timing, "convention": shards.CONVENTION}
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=1, default=str))
    # The parts are now inside shards; the manifest marks completion, so drop them.
    for e in entries:
        for p in parts_dir.glob(f"{shards.video_key(e.video_id)}.*"):
            p.unlink()
    return manifest
