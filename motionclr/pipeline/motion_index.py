"""Per-video motion index, computed offline from a video's uint8 flow.

``compute_index(flow_uint8, bound, params)`` returns small numpy arrays that the clip
samplers (``motionclr.datasets.samplers``) and the motion-focused crop read:

=====================  ===================  ================================================
key                    shape / dtype        meaning
=====================  ===================  ================================================
``n_frames``           () int64             RGB frames of the video (flow frames + 1)
``mds_frame_score``    (T-1,) float32       MSCL motion differential of each flow frame
``mds_clip_score``     (S_mds,) float32     mean frame score over a clip starting at s
``mds_chosen``         (S_mds,) bool        clip score strictly above the video's median
``mcl_map``            (T-1, g, g) float32  MCL coarse motion-boundary map of each frame
``mcl_clip_score``     (S_mcl,) float32     MCL temporal motion score of a clip start
``segments``           (N+1,) int64         VCLR/TSN segment boundaries, 0 .. n_frames
=====================  ===================  ================================================

Starts are frame indices ``0 .. max_start(n_frames, clip_len, stride)`` (flow index i is the
motion from frame i to i+1); a clip's flow indices are clamped to the last flow frame, as
in the samplers. Everything the arrays depend on is in ``IndexParams`` plus
``INDEX_VERSION``; ``index_key(params)`` is what goes into the stage's cache key.
``write_index`` / ``IndexStore`` keep the arrays of many videos in one HDF5 file, read
lazily per video (``IndexStore.get(video_id)`` is what ``ShardClipDataset(index=...)`` calls).
See docs/motion_index.md for the choices made where the reference code is not known.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np

from motionclr.datasets.samplers import clip_motion_map, max_start, segment_bounds  # noqa: F401

INDEX_VERSION = 2  # 2: MDS last-frame score 0, as MSCL's script


@dataclass(frozen=True)
class IndexParams:
    """Parameters of the motion index (all of them enter the cache key).

    MDS (MSCL, methods.md 1.5): clip score over ``mds_clip_len`` flow frames ``mds_stride``
    apart (MSCL: 8 and 4 in flow-index units); attention pooled in ``mds_pool``-pixel blocks
    (MSCL: 28); the colour coding normalises each flow frame by its largest vector
    (``mds_color_norm="frame_max"``, as the standard Middlebury/RAFT visualiser) or by the
    quantisation bound (``"bound"``, keeps magnitude changes visible).
    MCL (methods.md 4.3): per-frame maps over a sliding window of ``mcl_window`` flows
    (UCF101 8, K400 4) block-averaged to ``mcl_grid`` x ``mcl_grid``; clip score over
    ``mcl_span`` consecutive flows (32 for 16 frames at stride 2) for starts of a
    ``mcl_clip_len`` x ``mcl_stride`` clip; ``mcl_border_frac`` of each side zeroed
    (MCL: 8 px of 224).
    VCLR (methods.md 2.3): ``num_segments`` equal segments.
    """
    mds_clip_len: int = 8
    mds_stride: int = 4
    mds_pool: int = 28
    mds_color_norm: str = "frame_max"
    mcl_clip_len: int = 16
    mcl_stride: int = 2
    mcl_span: int = 32
    mcl_window: int = 8
    mcl_grid: int = 7
    mcl_border_frac: float = 8 / 224
    num_segments: int = 3

    def __post_init__(self):
        if self.mds_color_norm not in ("frame_max", "bound"):
            raise ValueError(f"mds_color_norm {self.mds_color_norm!r}: frame_max | bound")


def index_key(params: IndexParams) -> dict:
    """The cache-key contribution of the index stage."""
    return {"index_version": INDEX_VERSION, **asdict(params)}


# ----------------------------------------------------------------------------- filters

def _pad1(x: np.ndarray) -> np.ndarray:
    """Replicate-pad the last two axes by one pixel."""
    return np.pad(x, [(0, 0)] * (x.ndim - 2) + [(1, 1), (1, 1)], mode="edge")


def _grad(x: np.ndarray, center: float) -> tuple[np.ndarray, np.ndarray]:
    """3x3 derivative filters on ``(..., H, W)``: Sobel for ``center=2``, Prewitt for 1.

    Returns (d/dx, d/dy), unnormalised like OpenCV's kernels, replicate borders.
    """
    p = _pad1(x)
    dx = p[..., :, 2:] - p[..., :, :-2]  # (..., H+2, W)
    dy = p[..., 2:, :] - p[..., :-2, :]  # (..., H, W+2)
    gx = dx[..., :-2, :] + center * dx[..., 1:-1, :] + dx[..., 2:, :]
    gy = dy[..., :, :-2] + center * dy[..., :, 1:-1] + dy[..., :, 2:]
    return gx, gy


def block_mean(x: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Average ``(..., H, W)`` over a ``rows`` x ``cols`` grid of near-equal blocks."""
    H, W = x.shape[-2:]
    ye = np.linspace(0, H, rows + 1).round().astype(int)
    xe = np.linspace(0, W, cols + 1).round().astype(int)
    # a frame smaller than the grid has empty blocks: reduceat then yields the pixel at the
    # block's start, i.e. nearest-neighbour upsampling, so count it as one pixel
    s = np.add.reduceat(np.add.reduceat(x, np.minimum(ye[:-1], H - 1), axis=-2),
                        np.minimum(xe[:-1], W - 1), axis=-1)
    return s / (np.maximum(np.diff(ye), 1)[:, None] * np.maximum(np.diff(xe), 1)[None, :])


def _pool_blocks(x: np.ndarray, block: int) -> np.ndarray:
    """Average pooling in ``block``-pixel blocks; a partial last block averages what it has."""
    H, W = x.shape[-2:]
    ye, xe = np.arange(0, H, block), np.arange(0, W, block)
    s = np.add.reduceat(np.add.reduceat(x, ye, axis=-2), xe, axis=-1)
    ny = np.minimum(ye + block, H) - ye
    nx = np.minimum(xe + block, W) - xe
    return s / (ny[:, None] * nx[None, :])


def _bilinear_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) weights of a half-pixel-centred bilinear resize (as cv2 / torch)."""
    src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    f = (src - lo).astype(np.float32)
    m = np.zeros((n_out, n_in), np.float32)
    np.add.at(m, (np.arange(n_out), lo), 1 - f)
    np.add.at(m, (np.arange(n_out), hi), f)
    return m


# ----------------------------------------------------------------------------- colour wheel

def _colorwheel() -> np.ndarray:
    """The Middlebury flow colour wheel: 55 RGB colours in [0, 1] (Baker et al. 2007)."""
    segs = [(15, (1, 0, 0), (0, 1, 0)),   # red -> yellow: G rises
            (6, (1, 1, 0), (-1, 0, 0)),   # yellow -> green: R falls
            (4, (0, 1, 0), (0, 0, 1)),    # green -> cyan: B rises
            (11, (0, 1, 1), (0, -1, 0)),  # cyan -> blue: G falls
            (13, (0, 0, 1), (1, 0, 0)),   # blue -> magenta: R rises
            (6, (1, 0, 1), (0, 0, -1))]   # magenta -> red: B falls
    rows = []
    for n, base, step in segs:
        t = np.arange(n)[:, None] / n
        rows.append(np.asarray(base, np.float32) + t * np.asarray(step, np.float32))
    return np.concatenate(rows).astype(np.float32)


_WHEEL = _colorwheel()


def flow_to_color(u: np.ndarray, v: np.ndarray, rad_max) -> np.ndarray:
    """Middlebury colour coding of flow ``(..., H, W)`` -> RGB ``(..., H, W, 3)`` in [0, 1].

    Hue = direction, saturation = length / ``rad_max`` (broadcast per frame); vectors longer
    than ``rad_max`` are darkened (x 0.75), as in the reference visualiser.
    """
    rad_max = np.asarray(rad_max, np.float32)
    u, v = u / (rad_max + 1e-5), v / (rad_max + 1e-5)
    rad = np.sqrt(u * u + v * v)
    ncols = len(_WHEEL)
    fk = (np.arctan2(-v, -u) / np.pi + 1) / 2 * (ncols - 1)
    k0 = np.floor(fk).astype(np.int64)
    k1 = (k0 + 1) % ncols
    f = (fk - k0)[..., None]
    col = (1 - f) * _WHEEL[k0] + f * _WHEEL[k1]
    r = rad[..., None]
    return np.where(r <= 1, 1 - r * (1 - col), col * 0.75).astype(np.float32)


# ----------------------------------------------------------------------------- MDS

def mds_frame_scores(flow: np.ndarray, bound: float, pool: int = 28,
                     color_norm: str = "frame_max", chunk: int = 32) -> np.ndarray:
    """MSCL's motion differential of each flow frame.

    1. colour-code each flow frame (Middlebury wheel);
    2. weight it by attention: motion-boundary magnitude sqrt(|grad u|^2 + |grad v|^2)
       (Sobel), averaged in ``pool``-pixel blocks, bilinearly upsampled, divided by its
       maximum (MSCL mode "rgb_map" + "max"; a motionless frame has zero attention);
    3. score[t] = spatial mean of the per-pixel L2 colour difference between the weighted
       images of frames t and t+1; the last frame scores 0.

    Checked against MSCL's script (``tools/ssl/generate_mcl_samples.py`` in
    megvii-research/MSCL, ``weight_type=rgb_map``, ``att_type=max``): it appends a copy of
    the last weighted image and differences each frame with the next, so frame t holds the
    t -> t+1 difference (as here) and the last frame's difference is 0 (version 1 of this
    index repeated the previous score instead). Remaining differences, kept on purpose:
    its Sobel filters use scipy's "reflect" border, which for 3x3 equals our replicate
    border; its attention pooling (``avg_pool2d``, 28-pixel blocks) drops a partial last
    block where we average it; its colour images are 0-255 where ours are 0-1 (a scale,
    irrelevant to the ranking). ``clip_scores`` and the median are discussed there.

    Args:
        flow: float32 ``(N, H, W, 2)`` flow in pixels.
    Returns:
        ``(N,)`` float32, in colour units (channels in [0, 1]).
    """
    N, H, W, _ = flow.shape
    if N < 2:
        return np.zeros(N, np.float32)
    gh, gw = -(-H // pool), -(-W // pool)
    Ay, Ax = _bilinear_matrix(H, gh), _bilinear_matrix(W, gw)
    diffs = np.empty(N - 1, np.float32)
    prev = None
    for a in range(0, N, chunk):  # bounded memory: a chunk of weighted images at a time
        f = flow[a:a + chunk]
        u, v = f[..., 0], f[..., 1]
        ux, uy = _grad(u, 2.0)
        vx, vy = _grad(v, 2.0)
        mb = np.sqrt(ux ** 2 + uy ** 2 + vx ** 2 + vy ** 2)
        att = np.einsum("hi,nij,wj->nhw", Ay, _pool_blocks(mb, pool).astype(np.float32), Ax)
        att /= np.maximum(att.max(axis=(1, 2), keepdims=True), 1e-12)
        if color_norm == "frame_max":
            rmax = np.sqrt(u ** 2 + v ** 2).max(axis=(1, 2))[:, None, None]
        else:
            rmax = np.float32(bound)
        img = flow_to_color(u, v, rmax) * att[..., None]  # (n, H, W, 3)
        seq = img if prev is None else np.concatenate([prev, img])
        d = np.sqrt(((seq[1:] - seq[:-1]) ** 2).sum(-1)).mean(axis=(1, 2))
        start = a - (0 if prev is None else 1)
        diffs[start:start + len(d)] = d
        prev = img[-1:]
    return np.append(diffs, 0.0).astype(np.float32)  # MSCL: the last frame minus itself


def clip_scores(frame_score: np.ndarray, n_frames: int, clip_len: int, stride: int):
    """Mean of ``frame_score`` over each candidate clip (indices clamped to the last frame).

    MSCL's script scores every frame as a start, adding 0 for indices past the end, and
    takes the median over all of them; we score only the starts a full clip allows
    (``max_start``), which the sampler can draw, so the median is over those."""
    n = len(frame_score)
    starts = np.arange(max_start(n_frames, clip_len, stride) + 1)
    idx = np.minimum(starts[:, None] + stride * np.arange(clip_len)[None], n - 1)
    return frame_score[idx].mean(axis=1).astype(np.float32)


# ----------------------------------------------------------------------------- MCL

def _window_sums(c: np.ndarray, n: int, starts: np.ndarray, length: int) -> np.ndarray:
    """Sum of frames ``[s, min(s + length, n))`` from a prefix sum ``c`` of shape (n+1, ...)."""
    return c[np.minimum(starts + length, n)] - c[starts]


def mcl_maps_and_scores(flow: np.ndarray, n_frames: int, p: IndexParams):
    """MCL's per-frame coarse motion maps and per-start temporal scores.

    For each flow component (u, v) separately, Prewitt x/y derivatives are summed over a
    window of flows, then the magnitude is taken (MCL: derivative sums -> cartToPolar).
    Maps: window ``mcl_window`` from each frame, border zeroed, block-averaged to the grid,
    u + v. Clip score: window ``mcl_span`` from each start, mean of u and v magnitudes,
    border zeroed, spatial mean. Computed at the shard's resolution (MCL resizes flow to
    224^2 first; the maps and scores are only ranked within a video, so a uniform rescale
    would not change them).

    Returns:
        ``(maps (N, g, g), scores (S,))`` float32.
    """
    N, H, W, _ = flow.shape
    g = p.mcl_grid
    bh, bw = round(p.mcl_border_frac * H), round(p.mcl_border_frac * W)
    interior = np.zeros((H, W), bool)
    interior[bh:H - bh, bw:W - bw] = True
    frames = np.arange(N)
    starts = np.arange(max_start(n_frames, p.mcl_clip_len, p.mcl_stride) + 1)
    starts = np.minimum(starts, N - 1)
    maps = np.zeros((N, g, g), np.float32)
    scores = np.zeros(len(starts), np.float32)
    for comp in range(2):  # u then v; float64 prefix sums keep long windows exact
        gx, gy = _grad(flow[..., comp], 1.0)
        cx = np.zeros((N + 1, H, W), np.float64)
        cy = np.zeros((N + 1, H, W), np.float64)
        np.cumsum(gx, axis=0, out=cx[1:])
        np.cumsum(gy, axis=0, out=cy[1:])
        del gx, gy
        mag = np.hypot(_window_sums(cx, N, frames, p.mcl_window),
                       _window_sums(cy, N, frames, p.mcl_window)) * interior
        maps += block_mean(mag, g, g).astype(np.float32)
        mag = np.hypot(_window_sums(cx, N, starts, p.mcl_span),
                       _window_sums(cy, N, starts, p.mcl_span)) * interior
        scores += 0.5 * mag.mean(axis=(1, 2)).astype(np.float32)
    return maps, scores


# ----------------------------------------------------------------------------- entry point

def compute_index(flow_uint8: np.ndarray, bound: float, params: IndexParams | None = None
                  ) -> dict[str, np.ndarray]:
    """The motion index of one video.

    Args:
        flow_uint8: ``(T-1, H, W, 2)`` uint8 flow, quantised with ``bound`` (dx, dy).
        bound: the quantisation bound; flow = q * 2b/255 - b pixels.
        params: ``IndexParams`` (defaults follow the papers' code, see its docstring).
    Returns:
        dict of numpy arrays, described in this module's docstring.
    """
    p = params or IndexParams()
    if flow_uint8.ndim != 4 or flow_uint8.shape[-1] != 2 or len(flow_uint8) < 1:
        raise ValueError(f"expected uint8 flow (T-1, H, W, 2), got {flow_uint8.shape}")
    flow = flow_uint8.astype(np.float32) * np.float32(2.0 * bound / 255.0) - np.float32(bound)
    n_frames = len(flow) + 1
    frame_score = mds_frame_scores(flow, bound, p.mds_pool, p.mds_color_norm)
    clip = clip_scores(frame_score, n_frames, p.mds_clip_len, p.mds_stride)
    maps, mcl_scores = mcl_maps_and_scores(flow, n_frames, p)
    return {
        "n_frames": np.asarray(n_frames, np.int64),
        "mds_frame_score": frame_score,
        "mds_clip_score": clip,
        "mds_chosen": clip > np.median(clip),
        "mcl_map": maps,
        "mcl_clip_score": mcl_scores,
        "segments": segment_bounds(n_frames, p.num_segments),
    }


# ----------------------------------------------------------------------------- storage

def write_index(path: str | Path, index: dict[str, dict[str, np.ndarray]],
                params: IndexParams) -> Path:
    """Write ``{video_id: compute_index(...)}`` to one HDF5 file (tmp name, then rename)."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs["key"] = json.dumps(index_key(params), sort_keys=True)
        # ids may hold "/" (class/video) and then live in nested groups: list them apart
        f.create_dataset("video_ids", data=list(index), dtype=h5py.string_dtype())
        videos = f.create_group("videos")
        for vid, arrays in index.items():
            g = videos.create_group(vid)
            for k, v in arrays.items():
                g.create_dataset(k, data=v)
    os.replace(tmp, path)
    return path


class IndexStore:
    """Read-only ``video_id -> {key: array}`` view of a ``write_index`` file.

    Opens the file lazily in each process (safe across DataLoader forks) and reads one
    video's arrays per ``get``; ``key`` is the stored ``index_key`` for checking a cache.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._f, self._pid = None, None
        with h5py.File(self.path, "r") as f:
            self.key = json.loads(f.attrs["key"])
            self._ids = frozenset(v.decode() for v in f["video_ids"][()])

    def __getstate__(self):
        return {**self.__dict__, "_f": None, "_pid": None}

    def __contains__(self, video_id) -> bool:
        return video_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def get(self, video_id: str, default=None) -> dict[str, np.ndarray] | None:
        if video_id not in self._ids:
            return default
        if self._pid != os.getpid():
            self._f, self._pid = h5py.File(self.path, "r"), os.getpid()
        g = self._f["videos"][video_id]
        return {k: g[k][()] for k in g}
