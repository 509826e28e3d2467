"""The `index` stage: the motion index of every video, computed once from the flow shards.

Written beside the shards as ``index-<hash>.h5`` (one group per video, arrays from
``motion_index.compute_index``); the hash covers the index parameters and version, and the
flow stage it was computed from is the directory it lives in. Training loads it into memory
(a few KB per video) and hands each video's arrays to the clip samplers.
"""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from motionclr import provenance
from motionclr.pipeline.cache import atomic_write, remove_stale_tmp, stable_hash
from motionclr.pipeline.motion_index import IndexParams, compute_index, index_key
from motionclr.storage import FrameSums, load_manifest
from motionclr.storage.shards import read_frames


def index_params(cfg) -> IndexParams:
    """``IndexParams`` from ``cfg.index.params``; clip geometry defaults to ``cfg.clip``."""
    base = {"mcl_clip_len": cfg.clip.clip_len, "mcl_stride": cfg.clip.stride,
            "mcl_span": cfg.clip.clip_len * cfg.clip.stride,
            "mds_clip_len": cfg.clip.clip_len, "mds_stride": cfg.clip.stride}
    valid = set(IndexParams.__dataclass_fields__)
    unknown = sorted(set(cfg.index.params) - valid)
    if unknown:
        raise KeyError(f"unknown index parameter(s) {unknown}; valid: {sorted(valid)}")
    return IndexParams(**{**base, **cfg.index.params})


def index_path(stage_dir: Path, params: IndexParams) -> Path:
    return Path(stage_dir) / f"index-{stable_hash(index_key(params))}.h5"


def _index_shard(stage_dir: Path, shard: str, videos: list[dict], bound: float,
                 params: IndexParams, sums: FrameSums) -> dict:
    out = {}
    with h5py.File(stage_dir / shard, "r") as f:
        for v in videos:  # flow checked against its checksums: no index of damaged data
            out[v["video_id"]] = compute_index(read_frames(stage_dir, v, "flow", f, sums),
                                               bound, params)
    return out


def run_index_stage(cfg, stage_dir: Path, progress: bool = True) -> Path:
    """Compute (or reuse) the index of every video in ``stage_dir``; returns its path."""
    from joblib import Parallel, delayed
    params = index_params(cfg)
    path = index_path(stage_dir, params)
    if path.is_file():
        if progress:
            print(f"index: cache hit, {path}")
        return path
    remove_stale_tmp(Path(stage_dir))
    provenance.record(path, "index")  # index-<hash>.provenance.jsonl, .log.txt under the CLI
    man = load_manifest(stage_dir)
    by_shard: dict[str, list[dict]] = {}
    for v in man["videos"]:
        by_shard.setdefault(v["shard"], []).append(v)
    sums = FrameSums(stage_dir, man)
    results = Parallel(n_jobs=max(1, min(cfg.pipeline.workers, len(by_shard))))(
        delayed(_index_shard)(Path(stage_dir), s, vs, float(man["bound"]), params, sums)
        for s, vs in sorted(by_shard.items()))

    def write(fileobj):
        with h5py.File(fileobj, "w") as f:
            f.attrs["params"] = json.dumps(index_key(params))
            for res in results:
                for vid, arrays in res.items():
                    g = f.require_group("videos").create_group(vid)
                    for k, a in arrays.items():
                        g.create_dataset(k, data=np.asarray(a))
    atomic_write(path, write)  # disk full: one StorageError line, no partial index
    if progress:
        print(f"index: {len(man['videos'])} videos -> {path}")
    return path


def load_index(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """video_id -> {array name: array}, all in memory."""
    out: dict[str, dict[str, np.ndarray]] = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Group) and obj and all(isinstance(x, h5py.Dataset)
                                                        for x in obj.values()):
            out[name] = {k: d[()] for k, d in obj.items()}

    with h5py.File(path, "r") as f:
        f["videos"].visititems(visit)
    return out
