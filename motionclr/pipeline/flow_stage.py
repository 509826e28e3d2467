"""The `flow` stage: decode every video, compute flow, pack HDF5 shards, write a manifest.

Work is per video and idempotent: a finished video is a file in ``parts/`` (or a
``.failed.json`` with its reason), so an interrupted run resumes where it stopped and
several processes (``--shard i/n``) can share one directory. When every video has an
outcome, the parts are packed into shards and ``manifest.json`` is written last: its
presence marks the stage complete, and a later run with the same config is a no-op.

Everything the config asks for is checked before any video is touched (flow method and its
typed params, the torch device, decode and pipeline settings). A video's error is recorded
for that video; an environment error stops the run and records nothing
(``motionclr.pipeline.failures``). Every run ends with ``N packed, M failed``.
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import json
import time
from pathlib import Path

import numpy as np

from motionclr import provenance
from motionclr.config import Config
from motionclr.errors import StorageError, UserError
from motionclr.datasets.sources import SOURCES, VideoEntry, limit_entries, list_videos
from motionclr.pipeline import flow_batch
from motionclr.pipeline.cache_admin import note_version_only_change, touch_used
from motionclr.pipeline.cache import (atomic_write_text, file_digest, remove_stale_tmp,
                                      stable_hash, storage)
from motionclr.pipeline.claims import claim, release
from motionclr.pipeline.decode import (DECODER_VERSION, DecodeError, decode_video,
                                       ffmpeg_version, validate_decode_params)
from motionclr.pipeline.failures import environment_failure, is_environment_error, top_reasons
from motionclr.storage import shards
from motionclr.storage.checksums import FrameSums, write_checksums
from motionclr.storage.shards import FORMAT_VERSION

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
    from motionclr.flow.params import device_kind
    flow = {"method": cfg.flow.method, "bound": cfg.flow.bound, "params": cfg.flow.params}
    if cfg.flow.method in TORCH_METHODS:  # CPU and GPU kernels round differently
        flow["device"] = device_kind(cfg.flow.method, cfg.flow.device)
    return {"decode": {"short_side": cfg.decode.short_side, "fps": cfg.decode.fps,
                       "max_frames": cfg.decode.max_frames, "decoder": DECODER_VERSION},
            "flow": flow,
            "storage": {"compression": cfg.pipeline.compression,
                        "time_phases": cfg.pipeline.time_phases},
            "versions": library_versions(cfg.flow.method)}


def stage_dir(cfg: Config, entries: list[VideoEntry]) -> Path:
    """``<cache>/<dataset>/flow-<hash>``; inputs are identified by relative path and size."""
    inputs = sorted((e.video_id, e.path.stat().st_size if e.path.is_file() else -1)
                    for e in entries)
    key = stable_hash({"dataset": cfg.data.dataset, "inputs": inputs, **stage_params(cfg)})
    return Path(cfg.data.cache) / cfg.data.dataset / f"flow-{key}"


def _storage(where: Path):
    """A write error is the disk's: one StorageError line; finished videos are kept."""
    return storage(where, "finished videos are kept; ")


COMPRESSIONS = ("none", "lzf", "gzip")


def validate_stage_config(cfg: Config) -> None:
    """Everything that would otherwise fail on every video, checked before any work:
    ValueError for a config mistake, EnvironmentFailure for a machine that cannot run it."""
    from motionclr.flow import validate_flow
    validate_flow(cfg.flow.method, cfg.flow.params, cfg.flow.device)
    if not cfg.flow.bound > 0:
        raise ValueError(f"flow.bound must be > 0, got {cfg.flow.bound}")
    validate_decode_params(cfg.decode.short_side, cfg.decode.fps, cfg.decode.timeout,
                           cfg.decode.max_frames)
    p = cfg.pipeline
    if p.compression not in COMPRESSIONS:
        raise ValueError(f"pipeline.compression must be one of {list(COMPRESSIONS)}, "
                         f"got {p.compression!r}")
    if p.backend not in BACKENDS:
        raise ValueError(f"unknown pipeline.backend {p.backend!r}; valid: {list(BACKENDS)}")
    for key, v in (("workers", p.workers), ("time_phases", p.time_phases),
                   ("shard_mb", p.shard_mb)):
        if v < 1:
            raise ValueError(f"pipeline.{key} must be >= 1, got {v}")
    parse_shard(p.shard)


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


def part_attrs(cfg: Config, entry: VideoEntry, digest: str, info: dict,
               flow: np.ndarray) -> dict:
    """The attributes of one video's part (and shard group): where it came from, how it was
    decoded and computed, and ffmpeg's complaints (frames cut after the first damaged one).
    Shared by the per-video and the batched path, so their parts are the same."""
    return {"source_path": str(entry.path), "source_blake2b": digest,
            "n_frames": info["n_frames"], "fps": info["fps"],
            "src_size": [info["src_width"], info["src_height"]],
            "size": [info["width"], info["height"]],
            "resize_short_side": cfg.decode.short_side,
            "flow_method": cfg.flow.method, "flow_params": cfg.flow.params,
            "bound": float(cfg.flow.bound), "versions": library_versions(cfg.flow.method),
            "convention": shards.CONVENTION,
            "flow_clipped_fraction": float(np.mean(np.abs(flow) > cfg.flow.bound)),
            "decode_errors": info["decode_errors"],
            "frames_dropped": info["frames_dropped"]}


def process_video(entry: VideoEntry, cfg: Config, parts_dir: Path) -> dict:
    """Decode + flow + write one part. Never raises for a bad video: records the reason."""
    from motionclr.flow import compute_flow, quantize
    t0 = time.perf_counter()
    # Several processes may share this directory (job arrays, Ray/Dask): claim first, then
    # look again — another worker may have finished and released it in between.
    skipped = {"video_id": entry.video_id, "status": "skipped", "frames": 0, "seconds": 0.0}
    with _storage(parts_dir):  # a claim is a write: a read-only disk stops the run here
        if shards.part_status(parts_dir, entry.video_id) or not claim(parts_dir, entry.video_id):
            return skipped
    # Packed meanwhile: the packer writes the manifest before it deletes the parts, so a part
    # missing now with a manifest present was packed, not lost.
    if shards.part_status(parts_dir, entry.video_id) or \
            (parts_dir.parent / "manifest.json").is_file():
        release(parts_dir, entry.video_id)
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
        flow_batch.pin_cpu_threads(cfg)
        flow = compute_flow(frames, method=cfg.flow.method, device=cfg.flow.device,
                            **cfg.flow.params)
        q = quantize(flow, cfg.flow.bound)
        attrs = part_attrs(cfg, entry, digest, info, flow)
    except KeyboardInterrupt:
        release(parts_dir, entry.video_id)
        raise
    except Exception as e:  # noqa: BLE001 - a video's failure is recorded, run goes on
        if is_environment_error(e):
            # The machine's fault (driver, OOM, import, checkpoint, permission, disk): it
            # would fail every video alike. Stop, and record nothing against the video.
            release(parts_dir, entry.video_id)
            raise environment_failure(e, entry.video_id) from e
        reason = f"{type(e).__name__}: {e}" if not isinstance(e, DecodeError) else str(e)
        with _storage(parts_dir):
            shards.write_failure(parts_dir, entry.video_id, str(entry.path), reason)
            _event(parts_dir, entry.video_id, "failed", time.perf_counter() - t0, reason)
        release(parts_dir, entry.video_id)
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
        release(parts_dir, entry.video_id)


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
    try:  # the bar is closed on an error too, so the error's line stands on its own
        with cluster_backend(cfg.pipeline.backend, cfg.pipeline.address, n_jobs) as backend, \
                parallel_config(backend=backend, n_jobs=n_jobs):
            gen = Parallel(return_as="generator_unordered")(
                delayed(process_video)(e, cfg, parts_dir) for e in todo)
            for r in gen:
                results.append(r)
                frames += r["frames"]
                dt = max(time.perf_counter() - t0, 1e-9)
                bar.set_postfix(videos_s=f"{len(results) / dt:.2f}",
                                frames_s=f"{frames / dt:.1f}",
                                failed=sum(x["status"] == "failed" for x in results))
                bar.update(1)
    finally:
        bar.close()
    return results


def run_flow_stage(cfg: Config, progress: bool = True, retry_failed: bool = False) -> Path:
    """Run (or resume, or skip) the flow stage; returns the stage directory.

    ``retry_failed``: compute the videos recorded as failed again (in the ledger, or in the
    manifest of a finished stage, whose shards then gain the ones that now succeed).
    """
    validate_stage_config(cfg)  # before listing, decoding or writing anything
    entries = list_videos(cfg.data.dataset, cfg.data.root, cfg.data.split, **cfg.data.options)
    entries = limit_entries(entries, cfg.data.limit)
    out = stage_dir(cfg, entries)
    if (out / "manifest.json").is_file():
        touch_used(out)
        if retry_failed:
            _retry_finished(cfg, out, entries, progress)
        elif progress:
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
        provenance.record(out, "flow")  # command, versions, host; log.txt under the CLI

    mine = entries
    shard = parse_shard(cfg.pipeline.shard)
    if shard:
        mine = [e for i, e in enumerate(entries) if i % shard[1] == shard[0]]
    if retry_failed:
        with _storage(parts_dir):
            for e in mine:
                if shards.part_status(parts_dir, e.video_id) == "failed":
                    (parts_dir / f"{shards.video_key(e.video_id)}.failed.json").unlink()
    todo = [e for e in mine if shards.part_status(parts_dir, e.video_id) is None]
    if progress:
        print(f"flow: {len(entries)} videos, {len(mine) - len(todo)} already done, "
              f"{len(todo)} to compute with {cfg.flow.method} on {cfg.pipeline.workers} workers")
    t0 = time.perf_counter()
    # CUDA + a batchable method: one process per GPU, pairs batched across videos
    run = flow_batch.run_batched if flow_batch.wanted(cfg) else _run_parallel
    results = run(todo, cfg, parts_dir, progress) if todo else []
    wall = time.perf_counter() - t0

    pending = [e for e in entries if shards.part_status(parts_dir, e.video_id) is None]
    if pending and shard:
        if progress:
            print(f"flow: {len(pending)} videos still pending (other slices or workers). "
                  "Run again without --shard to pack when all slices finish.")
        return out
    # Without --shard this run is responsible for every video: wait for those other live
    # processes are computing, and compute any whose claimer died (claim() takes it over).
    if pending and progress:
        print(f"flow: waiting for {len(pending)} videos other processes are computing")
    while pending:
        time.sleep(0.5)
        if (out / "manifest.json").is_file():  # another process packed the stage
            return out
        results += [process_video(e, cfg, parts_dir) for e in pending]  # skips live claims
        pending = [e for e in pending if shards.part_status(parts_dir, e.video_id) is None]
    computed = [r for r in results if r["status"] != "skipped"]
    # One packer: processes finishing together must not both pack and delete parts. Wait
    # for a live packer; a dead (or zombie) one's lock is taken over by claim().
    waited = False
    while not _claim_pack_lock(parts_dir):
        if (out / "manifest.json").is_file():
            return out
        if progress and not waited:
            print("flow: another process is packing this stage; waiting for it")
        waited = True
        time.sleep(0.5)
    try:
        if not (out / "manifest.json").is_file():
            _pack(cfg, out, entries, timing={
                "seconds": wall, "computed": len(computed),
                "frames": sum(r["frames"] for r in computed)})
    finally:
        release(parts_dir, PACK_LOCK)
    return out


def _claim_pack_lock(parts_dir: Path) -> bool:
    with _storage(parts_dir):
        return claim(parts_dir, PACK_LOCK)


def _pack(cfg: Config, out: Path, entries: list[VideoEntry], timing: dict) -> dict:
    """write_manifest under the storage handler; a failed packing leaves no temp shard."""
    import os
    try:
        with _storage(out):
            return write_manifest(cfg, out, entries, timing)
    except BaseException:
        for tmp in out.glob(f"*.{os.getpid()}.tmp"):
            tmp.unlink(missing_ok=True)
        raise


def _retry_finished(cfg: Config, out: Path, entries: list[VideoEntry], progress: bool) -> None:
    """Recompute a finished stage's failed videos; the ones that now succeed are packed into
    new shards (``retry-*`` names) and the manifest is rewritten to include them."""
    import os
    man = shards.load_manifest(out)
    ids = {f["video_id"] for f in man["failed"]}
    retry = [e for e in entries if e.video_id in ids]
    if progress:
        print(f"flow: {out} is complete; retrying its {len(retry)} failed videos")
    if not retry:
        return
    staging = out / f".retry.{os.getpid()}"  # a directory: not a ``*.tmp`` file
    parts_dir = staging / "parts"
    with _storage(out):
        parts_dir.mkdir(parents=True, exist_ok=True)
    try:
        results = _run_parallel(retry, cfg, parts_dir, progress)
        done = [e for e in retry if shards.part_status(parts_dir, e.video_id) == "done"]
        failed = [shards.read_failure(parts_dir, e.video_id) for e in retry
                  if shards.part_status(parts_dir, e.video_id) == "failed"]
        new_sums: dict = {}
        with _storage(out):
            where = shards.pack_shards(staging, [e.video_id for e in done],
                                       cfg.pipeline.shard_mb, cfg.pipeline.time_phases,
                                       sums=new_sums)
            taken = {v["shard"] for v in man["videos"]}
            n = sum(1 for _ in out.glob("retry-*.h5"))
            renamed = {}
            for name in sorted(set(where.values())):
                while f"retry-{n:05d}.h5" in taken or (out / f"retry-{n:05d}.h5").exists():
                    n += 1
                renamed[name] = f"retry-{n:05d}.h5"
                os.replace(staging / name, out / renamed[name])
                n += 1
            where = {vid: renamed[name] for vid, name in where.items()}
            # One checksum file covers every video: the packed ones' sums carry over.
            old = FrameSums(out, man)
            sums = {v["video_id"]: {m: old.get((v["video_id"], m))[()] for m in ("rgb", "flow")}
                    for v in man["videos"]}
            sums.update(new_sums)
            old_file = man["checksums"]["file"]
            man["videos"] += _video_records(cfg, out, done, where)
            man["failed"] = failed
            man["timing"]["retried"] = len([r for r in results if r["status"] != "skipped"])
            man["checksums"] = write_checksums(out, man["videos"], sums)
            shards.save_manifest(out, man)
            if old_file != man["checksums"]["file"]:
                (out / old_file).unlink(missing_ok=True)
    finally:
        import shutil
        shutil.rmtree(staging, ignore_errors=True)


def flow_outcome(cfg: Config, out: Path) -> tuple[list[str], str]:
    """The run's last lines (``N packed, M failed`` and the top reasons) and, when the run
    produced nothing usable, the one-line error the CLI exits non-zero with ("" if fine)."""
    man_path = out / "manifest.json"
    if not man_path.is_file():
        if cfg.pipeline.shard:  # a job-array slice: packing is the last slice's job
            return [f"flow: slice {cfg.pipeline.shard} finished; no manifest yet"], ""
        return [f"flow: no manifest written in {out}"],             f"no manifest was written in {out}; rerun `motionclr flow` to finish the stage"
    man = json.loads(man_path.read_text())
    packed, failed = len(man["videos"]), man.get("failed", [])
    lines = [f"flow: {packed} packed, {len(failed)} failed"]
    lines += [f"  {n} x {reason}" for reason, n in top_reasons(failed)]
    if failed:
        lines.append("  (all reasons in manifest.json; `motionclr flow --retry-failed` "
                     "computes them again)")
    error = "" if packed else (f"nothing was packed: all {len(failed)} videos failed"
                               f"{' (' + top_reasons(failed, 1)[0][0] + ')' if failed else ''}")
    return lines, error


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


def _video_records(cfg: Config, out: Path, done: list[VideoEntry], where: dict) -> list[dict]:
    """Manifest records of packed videos (``where``: video_id -> shard file name)."""
    member = _split_membership(cfg)
    import h5py
    videos = []
    for e in done:
        with h5py.File(out / where[e.video_id], "r") as f:
            g = f["videos"][e.video_id]
            n, h, w = g["rgb"].shape[:3]
            fps = float(g.attrs["fps"])
            digest = str(g.attrs["content_blake2b"])
            errors = json.loads(g.attrs.get("decode_errors", "[]"))
            dropped = int(g.attrs.get("frames_dropped", 0))
            # Chunk byte offsets, so readers skip HDF5's metadata reads (cold-read latency).
            layout = shards.chunk_layout(g)
        videos.append({"video_id": e.video_id, "shard": where[e.video_id], "n_frames": int(n),
                       "height": int(h), "width": int(w), "fps": fps, "label": e.label,
                       "label_name": e.label_name, "group": e.group,
                       "content_blake2b": digest, "layout": layout,
                       "splits": member.get(e.video_id, {str(cfg.data.split): e.subset}),
                       **({"decode_errors": errors, "frames_dropped": dropped}
                          if errors or dropped else {})})
    return videos


def write_manifest(cfg: Config, out: Path, entries: list[VideoEntry], timing: dict) -> dict:
    parts_dir = out / "parts"
    done = [e for e in entries if shards.part_status(parts_dir, e.video_id) == "done"]
    failed = [shards.read_failure(parts_dir, e.video_id) for e in entries
              if shards.part_status(parts_dir, e.video_id) == "failed"]
    sums: dict = {}
    where = shards.pack_shards(out, [e.video_id for e in done], cfg.pipeline.shard_mb,
                               cfg.pipeline.time_phases, sums=sums)
    videos = _video_records(cfg, out, done, where)
    # Unlabelled test videos carry -1, and a class may have no video: index by label.
    names = {e.label: e.label_name for e in entries if e.label >= 0}
    classes = [names.get(i, "") for i in range(max(names, default=-1) + 1)]
    manifest = {"format_version": FORMAT_VERSION, "stage": "flow", "dataset": cfg.data.dataset,
                "bound": cfg.flow.bound, "params": stage_params(cfg),
                "classes": classes, "videos": videos, "failed": failed,
                "timing": timing, "convention": shards.CONVENTION,
                "checksums": write_checksums(out, videos, sums)}
    shards.save_manifest(out, manifest)
    # The parts are now inside shards; the manifest marks completion, so drop them.
    for e in entries:
        for p in parts_dir.glob(f"{shards.video_key(e.video_id)}.*"):
            p.unlink()
    return manifest
