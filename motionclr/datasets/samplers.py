"""Clip samplers: small objects shared by training and evaluation.

A sampler maps one video to a list of clips; a clip is an int array of frame indices
(``clip_len`` entries, ``stride`` apart). Flow index i is the motion frame i -> i+1, so a
clip's flow uses the same indices, clamped to ``n_frames - 2``.

Interface: ``sampler(n_frames: int, rng: np.random.Generator | None, info: dict | None)
-> list[np.ndarray]``; ``info`` carries the per-video motion index where a sampler needs it.

Samplers: ``random`` and ``uniform`` (plain), ``mds`` (MSCL's motion differential pairs),
``mcl`` (MCL's motion-focused triplets), ``segments`` (VCLR/TSN one clip per segment).
"""
from __future__ import annotations

import warnings

import numpy as np


def clip_indices(start: int, clip_len: int, stride: int, n_frames: int) -> np.ndarray:
    """Frame indices of a clip starting at ``start``; short videos repeat their last frame."""
    idx = start + stride * np.arange(clip_len)
    return np.minimum(idx, n_frames - 1)


def max_start(n_frames: int, clip_len: int, stride: int) -> int:
    return max(n_frames - (clip_len - 1) * stride - 1, 0)


class RandomClip:
    """``num_clips`` independent random clips (the positives of instance discrimination)."""

    def __init__(self, clip_len: int = 16, stride: int = 1, num_clips: int = 1):
        self.clip_len, self.stride, self.num_clips = clip_len, stride, num_clips

    def __call__(self, n_frames, rng=None, info=None):
        rng = rng if rng is not None else np.random.default_rng()
        hi = max_start(n_frames, self.clip_len, self.stride)
        return [clip_indices(int(rng.integers(0, hi + 1)), self.clip_len, self.stride, n_frames)
                for _ in range(self.num_clips)]


class UniformClips:
    """``num_clips`` uniformly spaced clips covering the video (deterministic; evaluation)."""

    def __init__(self, clip_len: int = 16, stride: int = 1, num_clips: int = 10):
        self.clip_len, self.stride, self.num_clips = clip_len, stride, num_clips

    def __call__(self, n_frames, rng=None, info=None):
        hi = max_start(n_frames, self.clip_len, self.stride)
        starts = np.linspace(0, hi, self.num_clips).round().astype(int)
        return [clip_indices(int(s), self.clip_len, self.stride, n_frames) for s in starts]


# --------------------------------------------------------------------------- motion-aware
# These read the per-video motion index (``motionclr.pipeline.motion_index.compute_index``)
# from ``info`` and fall back to random clips when ``info`` is None or lacks their key.
# Index arrays are per candidate start frame (flow index i = frame i).

def _rng(rng):
    return rng if rng is not None else np.random.default_rng()


class MDSPair:
    """MSCL's Motion Differential Sampling: a (query, key) pair of nearby high-motion clips.

    The query start is drawn uniformly from the video's chosen starts (``info["mds_chosen"]``,
    clip score above the video's median). MSCL draws uniformly from all starts until one is
    chosen (10 tries, then the first chosen start), which is this distribution up to a
    ~0.1 % fallback. The key start is the query start plus a uniform integer shift in
    ``[-max_shift, max_shift]`` (default ``clip_len * stride``), snapped to the nearest chosen
    start, so it may coincide with the query unless ``distinct``.

    Returns ``[query, key]`` clips.
    """

    def __init__(self, clip_len: int = 16, stride: int = 1, max_shift: int | None = None,
                 distinct: bool = False):
        self.clip_len, self.stride, self.distinct = clip_len, stride, distinct
        self.max_shift = clip_len * stride if max_shift is None else max_shift

    def starts(self, n_frames, rng=None, info=None) -> tuple[int, int]:
        rng = _rng(rng)
        hi = max_start(n_frames, self.clip_len, self.stride)
        chosen = None
        if info is not None and "mds_chosen" in info:
            chosen = np.flatnonzero(np.asarray(info["mds_chosen"])[:hi + 1])
        if chosen is None or chosen.size == 0:  # no index, or a motionless video
            chosen = np.arange(hi + 1)
        q = int(rng.choice(chosen))
        k = q + int(rng.integers(-self.max_shift, self.max_shift + 1))
        pool = chosen[chosen != q] if self.distinct and chosen.size > 1 else chosen
        k = int(pool[np.argmin(np.abs(pool - k))])  # nearest; ties go to the earlier start
        return q, k

    def __call__(self, n_frames, rng=None, info=None):
        q, k = self.starts(n_frames, rng, info)
        return [clip_indices(s, self.clip_len, self.stride, n_frames) for s in (q, k)]


class MCLTriplet:
    """MCL's motion-focused temporal sampling: a query and two other clips of the video.

    As MCL's code (``dataset/video_dataset.py``), the *frame* range is split in halves,
    ``[0, n//2)`` and ``[n//2, n)``, and a clip is drawn inside one half, so a clip of one
    half never shares a frame with a clip of the other: the order label and the intra-video
    negatives stay clean. With probability ``p_ordered`` the query comes from the first
    half and the two others from the second, else the reverse. With probability
    ``p_motion`` only the top ``floor(top_frac * n) + 1`` starts of each half by
    ``info["mcl_clip_score"]`` are eligible (n = starts in that half); otherwise every start
    of the half is (MCL's random triplet).

    A video shorter than two clip spans (``n // 2 < (clip_len - 1) * stride + 1``) cannot
    hold two disjoint halves; MCL then draws three random starts over the whole video and
    sorts them (the query first or last), and so do we: only there may clips overlap.

    Returns ``[query, other_a, other_b]`` with the others in time order; the order label is
    ``query_start < other_a_start`` (1 = "ordered").
    """

    def __init__(self, clip_len: int = 16, stride: int = 2, p_motion: float = 0.7,
                 p_ordered: float = 0.5, top_frac: float = 0.5):
        self.clip_len, self.stride = clip_len, stride
        self.p_motion, self.p_ordered, self.top_frac = p_motion, p_ordered, top_frac

    @property
    def span(self) -> int:
        """Frames one clip covers."""
        return (self.clip_len - 1) * self.stride + 1

    def _eligible(self, starts: np.ndarray, score, motion: bool) -> np.ndarray:
        if not motion or score is None or starts.size <= 1:
            return starts
        k = int(self.top_frac * starts.size) + 1
        top = np.argsort(-score[starts], kind="stable")[:k]
        return np.sort(starts[top])

    def starts(self, n_frames, rng=None, info=None) -> list[int]:
        rng = _rng(rng)
        hi = max_start(n_frames, self.clip_len, self.stride)
        ordered = rng.random() < self.p_ordered
        half = n_frames // 2
        if half < self.span:  # too short for two disjoint halves: MCL's fallback
            # said, not silent: on a set of such videos the motion-focused halves are off
            warnings.warn(
                f"MCL temporal sampling: a {n_frames}-frame video cannot hold two disjoint "
                f"halves of {self.span}-frame clips (clip_len {self.clip_len}, stride "
                f"{self.stride}); its three clips are drawn at random over the whole video, "
                f"may overlap, and p_motion has no effect (MCL's fallback). For the "
                f"motion-focused halves use clips of at most {n_frames // 2} frames.",
                UserWarning, stacklevel=2)
            pool = np.arange(hi + 1)
            s = np.sort(rng.choice(pool, size=3, replace=pool.size < 3))
            return [int(s[0]), int(s[1]), int(s[2])] if ordered else \
                [int(s[2]), int(s[0]), int(s[1])]
        score = None
        if info is not None and "mcl_clip_score" in info:
            score = np.asarray(info["mcl_clip_score"], dtype=np.float64)
            if score.size < hi + 1:  # index made with a longer clip: pad with its last value
                score = np.pad(score, (0, hi + 1 - score.size), mode="edge")
        motion = score is not None and rng.random() < self.p_motion
        first = np.arange(0, half - self.span + 1)  # the clip ends before frame n//2
        second = np.arange(half, n_frames - self.span + 1)  # the clip starts at n//2 or later
        first, second = (self._eligible(first, score, motion),
                         self._eligible(second, score, motion))
        q_pool, o_pool = (first, second) if ordered else (second, first)
        q = int(rng.choice(q_pool))
        others = np.sort(rng.choice(o_pool, size=2, replace=o_pool.size < 2))
        return [q, int(others[0]), int(others[1])]

    def __call__(self, n_frames, rng=None, info=None):
        return [clip_indices(s, self.clip_len, self.stride, n_frames)
                for s in self.starts(n_frames, rng, info)]


def clip_motion_map(mcl_map: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The motion map of a clip: the mean of its frames' maps ``(g, g)`` (MCL averages 16)."""
    return mcl_map[np.minimum(np.asarray(idx), len(mcl_map) - 1)].mean(axis=0)


def segment_bounds(n_frames: int, num_segments: int) -> np.ndarray:
    """``num_segments + 1`` boundaries splitting ``[0, n_frames)`` into near-equal segments."""
    return np.linspace(0, n_frames, num_segments + 1).round().astype(np.int64)


class SegmentClips:
    """VCLR/TSN segment sampling: ``per_segment`` clips from each of ``num_segments`` segments.

    Training (rng given): starts drawn without replacement inside each segment (VCLR: 3
    segments x 2 distinct frames, ``clip_len=1``). Evaluation (rng None): the centre of each
    segment, deterministic. Boundaries come from ``info["segments"]`` when it has the same
    number of segments, else from ``segment_bounds``. A start is clamped to the last start a
    full clip allows, so a clip may run past its segment's end.

    Returns clips grouped by draw: ``[seg0_a, seg1_a, ..., seg0_b, seg1_b, ...]`` (VCLR's query
    set then key set).
    """

    def __init__(self, num_segments: int = 3, clip_len: int = 1, stride: int = 1,
                 per_segment: int = 1):
        self.num_segments, self.clip_len = num_segments, clip_len
        self.stride, self.per_segment = stride, per_segment

    def bounds(self, n_frames, info=None) -> np.ndarray:
        if info is not None and "segments" in info:
            b = np.asarray(info["segments"])
            if b.size == self.num_segments + 1 and b[-1] == n_frames:
                return b
        return segment_bounds(n_frames, self.num_segments)

    def starts(self, n_frames, rng=None, info=None) -> np.ndarray:
        b = self.bounds(n_frames, info)
        hi = max_start(n_frames, self.clip_len, self.stride)
        out = np.empty((self.per_segment, self.num_segments), dtype=np.int64)
        for s in range(self.num_segments):
            lo, up = int(b[s]), max(int(b[s + 1]), int(b[s]) + 1)  # empty segment -> its start
            if rng is None:
                centre = (lo + up - 1) // 2
                out[:, s] = centre + np.arange(self.per_segment) - (self.per_segment - 1) // 2
            else:
                size = up - lo
                out[:, s] = lo + rng.choice(size, self.per_segment,
                                            replace=size < self.per_segment)
        return np.clip(out, 0, hi).reshape(-1)

    def __call__(self, n_frames, rng=None, info=None):
        return [clip_indices(int(s), self.clip_len, self.stride, n_frames)
                for s in self.starts(n_frames, rng, info)]


SAMPLERS = {"random": RandomClip, "uniform": UniformClips,
            "mds": MDSPair, "mcl": MCLTriplet, "segments": SegmentClips}


def make_sampler(name: str, **kwargs):
    if name not in SAMPLERS:
        raise ValueError(f"unknown clip sampler {name!r}; valid: {sorted(SAMPLERS)}")
    return SAMPLERS[name](**kwargs)
