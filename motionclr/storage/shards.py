"""HDF5 storage of decoded RGB and quantised flow: the one place that knows the format.

The pipeline writes through this module (parts, shards, checksums, manifest); datasets,
eval and viz read through it (``load_manifest``, ``read_video``, ``FrameReader``). It
imports nothing else from motionclr but ``errors`` and ``atomic``.

Layout of a stage directory::

    parts/<vkey>.h5           one finished video (written as *.tmp, renamed when complete)
    parts/<vkey>.failed.json  a video that could not be used, with its reason
    shard-00000.h5 ...        many videos each: /videos/<video_id>/{rgb,flow}
    checksums-<digest>.npy    per-frame checksums of every video (``storage.checksums``)
    manifest.json             videos -> (shard, frames, label, splits), failures, config

``rgb`` is ``(T, H, W, 3)`` uint8 and ``flow`` ``(T-1, H, W, 2)`` uint8 (see
``motionclr.flow.quantize``). In a shard every frame is its own chunk and the chunks lie in
the file **phase-major** (``time_phases`` P: frames 0, P, 2P, ... then 1, P+1, ...): the
logical arrays stay in time order for every HDF5 reader, while a clip at stride P is one
contiguous byte range and a stride-1 clip P ranges, so a cold clip read is one disk request
per modality instead of one per frame (docs/benchmarks.md, io section).
"""
from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np

from motionclr.atomic import atomic_write_text  # noqa: F401  (re-exported)
from motionclr.errors import UserError
from motionclr.storage.checksums import FrameSums, check_frames, frame_sums
from motionclr.storage.frame_reader import FrameReader

FORMAT_VERSION = 3  # bump when the shard layout, quantisation or checksums change

CONVENTION = ("flow[i] is the motion from frame i to frame i+1 as (dx, dy) in pixels; "
              "uint8 q dequantises as q*2b/255 - b with b = attrs['bound']; "
              "rgb is RGB order, frames 0-based")


def video_key(video_id: str) -> str:
    return hashlib.sha1(video_id.encode()).hexdigest()[:20]


def content_digest(rgb: np.ndarray, flow_q: np.ndarray) -> str:
    """blake2b of the stored arrays (shapes included): equal outputs have equal digests,
    however the work was split, and ``motionclr verify`` recomputes it from the shards."""
    h = hashlib.blake2b(digest_size=16)
    for a in (rgb, flow_q):
        h.update(repr(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _chunks(shape: tuple, chunk_frames: int) -> tuple:
    return (max(1, min(chunk_frames, shape[0])),) + tuple(shape[1:])


def write_part(parts_dir: Path, video_id: str, rgb: np.ndarray, flow_q: np.ndarray,
               attrs: dict, chunk_frames: int = 8, compression: str = "none") -> Path:
    """Write one video's arrays to ``parts/<vkey>.h5`` atomically (tmp name, then rename)."""
    final = parts_dir / f"{video_key(video_id)}.h5"
    tmp = parts_dir / f"{final.name}.{os.getpid()}.tmp"
    comp = None if compression == "none" else compression
    # Build the file in memory, then write it with plain file I/O: HDF5 can crash the
    # process when a write fails inside the library (disk full), a plain write() cannot.
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        g = f.create_group("video")
        g.create_dataset("rgb", data=rgb, chunks=_chunks(rgb.shape, chunk_frames))
        g.create_dataset("flow", data=flow_q, chunks=_chunks(flow_q.shape, chunk_frames),
                         compression=comp)
        for k, v in attrs.items():
            g.attrs[k] = json.dumps(v) if isinstance(v, (dict, list)) else v
        g.attrs["video_id"] = video_id
        g.attrs["content_blake2b"] = content_digest(rgb, flow_q)
    try:
        with open(tmp, "wb") as out:
            out.write(buf.getbuffer())
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)  # never leave a half-written file behind
        raise
    return final


def write_failure(parts_dir: Path, video_id: str, path: str, reason: str) -> None:
    atomic_write_text(parts_dir / f"{video_key(video_id)}.failed.json",
                      json.dumps({"video_id": video_id, "path": path, "reason": reason}))


def part_status(parts_dir: Path, video_id: str) -> str | None:
    k = video_key(video_id)
    if (parts_dir / f"{k}.h5").is_file():
        return "done"
    if (parts_dir / f"{k}.failed.json").is_file():
        return "failed"
    return None


def read_failure(parts_dir: Path, video_id: str) -> dict:
    return json.loads((parts_dir / f"{video_key(video_id)}.failed.json").read_text())


def phase_order(n: int, phases: int) -> np.ndarray:
    """Frame indices in the order their chunks are written: 0, P, 2P, ..., 1, P+1, ..."""
    return np.concatenate([np.arange(k, n, phases) for k in range(phases)])


def _copy_video(src, parent, name: str, phases: int) -> dict:
    """Copy a part's ``video`` group, uncompressed datasets re-chunked per frame and
    written phase-major (``write_direct_chunk`` allocates each chunk at the end of the
    file, in call order); compressed ones (read through h5py anyway) copied as they are.
    Returns each modality's per-frame checksums (``storage.checksums``) of what it copied."""
    g = parent.create_group(name)
    for k, v in src.attrs.items():
        g.attrs[k] = v
    sums = {}
    for m, ds in src.items():
        a = ds[()]
        sums[m] = frame_sums(a)
        if ds.compression is not None:
            src.copy(ds, g, name=m)
            continue
        out = g.create_dataset(m, shape=a.shape, dtype=a.dtype, chunks=(1,) + a.shape[1:])
        zero = (0,) * (a.ndim - 1)
        for t in phase_order(len(a), phases):
            out.id.write_direct_chunk((int(t),) + zero, a[t].tobytes())
    return sums


def pack_shards(stage_dir: Path, video_ids: list[str], shard_mb: int = 1024,
                time_phases: int = 2, sums: dict | None = None) -> dict[str, str]:
    """Copy finished parts into shards of about ``shard_mb`` MB, in ``video_ids`` order,
    frames stored phase-major (``time_phases``, see the module docstring).

    Each shard is written under a temporary name and renamed when complete, so a reader
    never sees a half-written shard. Returns video_id -> shard file name; ``sums`` (a
    dict) receives video_id -> per-frame checksums for ``write_checksums``.
    """
    if int(time_phases) < 1:
        raise ValueError(f"pipeline.time_phases must be >= 1, got {time_phases}")
    parts_dir = stage_dir / "parts"
    need = sum((parts_dir / f"{video_key(v)}.h5").stat().st_size for v in video_ids)
    free = shutil.disk_usage(stage_dir).free
    if need > free:  # refuse before HDF5 starts writing (it may crash on a full disk)
        raise OSError(errno.ENOSPC, f"packing needs {need / 2**20:.0f} MB, "
                                    f"{free / 2**20:.0f} MB free")
    where: dict[str, str] = {}
    batch: list[str] = []
    size = 0
    shard_idx = 0

    def flush():
        nonlocal batch, size, shard_idx
        if not batch:
            return
        name = f"shard-{shard_idx:05d}.h5"
        tmp = stage_dir / f"{name}.{os.getpid()}.tmp"
        # v1.10 format: a fixed-size dataset's chunk index is allocated when it is created;
        # 1 MB metadata blocks: object headers do not land between a video's chunks.
        with h5py.File(tmp, "w", libver=("v110", "v110"), meta_block_size=1 << 20) as dst:
            videos = dst.create_group("videos")
            for vid in batch:
                with h5py.File(parts_dir / f"{video_key(vid)}.h5", "r") as src:
                    parent = videos.require_group(os.path.dirname(vid)) if "/" in vid else videos
                    got = _copy_video(src["video"], parent, os.path.basename(vid), time_phases)
                if sums is not None:
                    sums[vid] = got
                where[vid] = name
        os.replace(tmp, stage_dir / name)
        shard_idx += 1
        batch, size = [], 0

    for vid in video_ids:
        p = parts_dir / f"{video_key(vid)}.h5"
        psize = p.stat().st_size
        if batch and size + psize > shard_mb * 2**20:
            flush()
        batch.append(vid)
        size += psize
    flush()
    # Shards from an earlier, larger packing of the same directory must not linger.
    for old in stage_dir.glob("shard-*.h5"):
        if old.name not in set(where.values()):
            old.unlink()
    return where


def chunk_layout(group) -> dict:
    """{modality: [frames per chunk, chunk offset runs]} of a packed video, for the
    manifest: readers then need no HDF5 metadata reads (compressed data: left out).
    Runs (``FrameReader.encode_offsets``) keep it to a few numbers per video."""
    layout = {}
    for m in ("rgb", "flow"):
        tab = FrameReader.table(group[m])
        if tab is not None:
            c, offs, shape, dtype = tab
            layout[m] = [int(c), FrameReader.encode_offsets(
                offs, c * FrameReader.frame_bytes(shape, dtype))]
    return layout


def add_layouts(stage_dir: Path, videos: list[dict]) -> None:
    """Set ``layout`` on every manifest record (``video_id``, ``shard``) in place."""
    by_shard: dict[str, list[dict]] = {}
    for v in videos:
        by_shard.setdefault(v["shard"], []).append(v)
    for shard, vs in by_shard.items():
        with h5py.File(Path(stage_dir) / shard, "r") as f:
            for v in vs:
                v["layout"] = chunk_layout(f["videos"][v["video_id"]])


def save_manifest(stage_dir: str | Path, manifest: dict) -> None:
    """Write ``manifest.json`` atomically: its presence marks the stage complete."""
    atomic_write_text(Path(stage_dir) / "manifest.json",
                      json.dumps(manifest, indent=1, default=str))


class StaleFormatError(UserError):
    """A stage written by an older motionclr (no per-frame checksums): not read silently."""


def load_manifest(stage_dir: str | Path, any_version: bool = False) -> dict:
    """The stage's manifest; a stage of another format version is refused (``any_version``
    lets ``verify`` inspect it)."""
    path = Path(stage_dir) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"no manifest.json in {stage_dir}: run `motionclr flow` first")
    man = json.loads(path.read_text())
    if not any_version and man.get("format_version") != FORMAT_VERSION:
        raise StaleFormatError(
            f"{stage_dir} has storage format {man.get('format_version')}, this motionclr "
            f"reads format {FORMAT_VERSION} (per-frame checksums); run `motionclr flow` again "
            "with the same config to write a new stage")
    return man


def read_frames(stage_dir: Path, entry: dict, modality: str, f: h5py.File,
                sums: FrameSums) -> np.ndarray:
    """A whole modality of one manifest video, checked against its recorded checksums."""
    a = f["videos"][entry["video_id"]][modality][()]
    want = sums.get((entry["video_id"], modality))
    if want is not None:
        check_frames(Path(stage_dir) / entry["shard"], entry["video_id"], modality,
                     np.arange(len(a)), a, want)
    return a


def read_video(stage_dir: str | Path, video_id: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """Whole video from a finished stage: (rgb uint8 (T,H,W,3), flow uint8 (T-1,H,W,2),
    attrs), checked against the frame checksums (``DamagedShardError`` if damaged)."""
    stage_dir = Path(stage_dir)
    man = load_manifest(stage_dir)
    entry = next((v for v in man["videos"] if v["video_id"] == video_id), None)
    if entry is None:
        raise KeyError(f"video {video_id!r} is not in {stage_dir}/manifest.json")
    sums = FrameSums(stage_dir, man)
    with h5py.File(stage_dir / entry["shard"], "r") as f:
        g = f["videos"][video_id]
        attrs = {k: (json.loads(v) if isinstance(v, str) and v[:1] in "[{" else v)
                 for k, v in g.attrs.items()}
        return (read_frames(stage_dir, entry, "rgb", f, sums),
                read_frames(stage_dir, entry, "flow", f, sums), attrs)


def repack_shard(stage_dir: Path, videos: list[dict], replaced: dict[str, Path], name: str,
                 time_phases: int) -> dict[str, dict]:
    """Write shard ``name`` (temp name, then rename) holding ``videos`` (manifest records
    of one shard, in order): those in ``replaced`` (video_id -> part file) from their new
    part, the others copied from their current shard. Updates each record's ``shard``,
    ``layout`` (and frame count / size / digest of replaced ones) in place; returns
    video_id -> per-frame checksums of what was written."""
    stage_dir = Path(stage_dir)
    tmp = stage_dir / f"{name}.{os.getpid()}.tmp"
    sums: dict[str, dict] = {}
    try:
        with h5py.File(tmp, "w", libver=("v110", "v110"), meta_block_size=1 << 20) as dst:
            root = dst.create_group("videos")
            for v in videos:
                vid = v["video_id"]
                src_path = replaced.get(vid, stage_dir / v["shard"])
                with h5py.File(src_path, "r") as src:
                    g = src["video"] if vid in replaced else src["videos"][vid]
                    parent = root.require_group(os.path.dirname(vid)) if "/" in vid else root
                    sums[vid] = _copy_video(g, parent, os.path.basename(vid), time_phases)
                out = root[vid]
                v["layout"] = chunk_layout(out)
                if vid in replaced:
                    v["n_frames"], v["height"], v["width"] = map(int, out["rgb"].shape[:3])
                    v["content_blake2b"] = str(out.attrs["content_blake2b"])
        os.replace(tmp, stage_dir / name)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    for v in videos:
        v["shard"] = name
    return sums
