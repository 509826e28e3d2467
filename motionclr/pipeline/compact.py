"""Compact clip storage for large datasets: JPEG-coded RGB, losslessly compressed flow.

The default shards store raw uint8 (fastest, ~65 KB per 128x170 RGB frame). For datasets
whose raw shards would not fit the disk, a video group can instead hold::

    rgb_jpeg     (nbytes,) uint8   the JPEG files of all frames, concatenated
    rgb_offsets  (T+1,) int64      frame t is rgb_jpeg[offsets[t]:offsets[t+1]]
    flow         (T-1, H, W, 2) uint8, chunked along time, Blosc-compressed via hdf5plugin
    attrs        format="compact", compact_format, jpeg_quality, flow_codec, height, width

A clip's JPEG bytes are read in one contiguous range and only the frames it uses are
decoded (a strided clip decodes 16 of the 31 frames it spans). The Blosc codecs need
``hdf5plugin``, an optional extra (``pip install 'motionclr[compact]'``, 186 MB): it is
imported when a Blosc codec is written or read, and its absence is a one-line error.
Measured trade-off (docs/benchmarks.md): ~6.5x less disk for RGB (JPEG q95), 5-7x less
for flow (lossless), read at roughly the JPEG-folder decode speed.
"""
from __future__ import annotations

import cv2
import h5py
import numpy as np

from motionclr.errors import UserError

COMPACT_FORMAT = 1
_IMREAD_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.10 decodes straight to RGB


_H5_BUILTIN = {None, "gzip", "lzf", "szip"}  # h5py names a plugin filter "unknown"


def _hdf5plugin():
    """The hdf5plugin module (registers Blosc with HDF5), or a clear error without it."""
    try:
        import hdf5plugin
    except ImportError:
        raise UserError("the compact layout's Blosc flow codecs (zstd, lz4) need hdf5plugin: "
                        "pip install 'motionclr[compact]' (or use codec lzf, gzip or none)"
                        ) from None
    return hdf5plugin


def flow_filter(codec: str) -> dict:
    """h5py ``create_dataset`` keyword arguments of a flow codec name.

    ``zstd``: Blosc-zstd level 6 (smallest: ~6.0 KB per 128x170 Farneback flow frame,
    ~1 ms/frame to write); ``lz4``: Blosc-lz4hc level 5 (~8.6 KB, decompresses ~3x faster);
    ``lzf``/``gzip``: h5py built-ins; ``none``: uncompressed (43.5 KB). No shuffle: on uint8
    flow bit-shuffle made zstd 50 % larger.
    """
    if codec in ("zstd", "lz4"):
        hdf5plugin = _hdf5plugin()
    if codec == "zstd":
        return dict(hdf5plugin.Blosc(cname="zstd", clevel=6, shuffle=hdf5plugin.Blosc.NOSHUFFLE))
    if codec == "lz4":
        return dict(hdf5plugin.Blosc(cname="lz4hc", clevel=5,
                                     shuffle=hdf5plugin.Blosc.NOSHUFFLE))
    if codec in ("lzf", "gzip"):
        return {"compression": codec}
    if codec == "none":
        return {}
    raise ValueError(f"flow codec {codec!r}; valid: zstd, lz4, lzf, gzip, none")


def encode_jpegs(rgb: np.ndarray, quality: int = 95) -> tuple[np.ndarray, np.ndarray]:
    """uint8 RGB ``(T, H, W, 3)`` -> (concatenated JPEG bytes, offsets ``(T+1,)``)."""
    parts = []
    for frame in rgb:
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(frame[..., ::-1]),
                               [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        parts.append(buf.ravel())
    offsets = np.zeros(len(parts) + 1, np.int64)
    np.cumsum([len(p) for p in parts], out=offsets[1:])
    return np.concatenate(parts), offsets


def decode_jpeg(buf: np.ndarray) -> np.ndarray:
    """One JPEG (uint8 bytes) -> uint8 RGB ``(H, W, 3)``."""
    if _IMREAD_RGB is not None:
        return cv2.imdecode(buf, _IMREAD_RGB)
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def write_compact_video(group: h5py.Group, rgb: np.ndarray, flow_q: np.ndarray,
                        quality: int = 95, flow_codec: str = "zstd",
                        chunk_frames: int = 8) -> None:
    """Store one video in ``group`` in the compact layout (see the module docstring)."""
    data, offsets = encode_jpegs(rgb, quality)
    group.create_dataset("rgb_jpeg", data=data)
    group.create_dataset("rgb_offsets", data=offsets)
    chunks = (max(1, min(chunk_frames, len(flow_q))),) + flow_q.shape[1:]
    group.create_dataset("flow", data=flow_q, chunks=chunks, **flow_filter(flow_codec))
    group.attrs.update({"format": "compact", "compact_format": COMPACT_FORMAT,
                        "jpeg_quality": quality, "flow_codec": flow_codec,
                        "n_frames": len(rgb), "height": rgb.shape[1], "width": rgb.shape[2]})


def read_rgb(group: h5py.Group, idx: np.ndarray) -> np.ndarray:
    """Frames ``idx`` -> uint8 ``(len(idx), H, W, 3)``: one byte-range read, decode only idx."""
    idx = np.asarray(idx)
    lo, hi = int(idx.min()), int(idx.max())
    off = group["rgb_offsets"][lo:hi + 2]
    blob = group["rgb_jpeg"][off[0]:off[-1]]
    rel = off - off[0]
    return np.stack([decode_jpeg(blob[rel[i - lo]:rel[i - lo + 1]]) for i in idx])


def read_flow(group: h5py.Group, idx: np.ndarray) -> np.ndarray:
    """Flow frames ``idx`` -> uint8 ``(len(idx), H, W, 2)`` (one contiguous read, then index)."""
    idx = np.asarray(idx)
    lo, hi = int(idx.min()), int(idx.max())
    dset = group["flow"]
    if dset.compression not in _H5_BUILTIN:   # a plugin filter (Blosc): HDF5 must know it
        _hdf5plugin()
    return dset[lo:hi + 1][idx - lo]


def storage_bytes(group: h5py.Group) -> tuple[int, int]:
    """(RGB bytes, flow bytes) as stored in the file (compressed sizes)."""
    rgb = group["rgb_jpeg"].id.get_storage_size() + group["rgb_offsets"].id.get_storage_size()
    return rgb, group["flow"].id.get_storage_size()
