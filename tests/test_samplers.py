"""Clip samplers: plain, MSCL MDS pairs, MCL triplets, VCLR segments."""
import numpy as np
import pytest

from motionclr.datasets import samplers as S


def _starts(clips):
    return [int(c[0]) for c in clips]


def test_plain_samplers_unchanged():
    clips = S.RandomClip(clip_len=4, stride=2, num_clips=3)(20, np.random.default_rng(0))
    assert len(clips) == 3 and all(np.array_equal(np.diff(c), [2, 2, 2]) for c in clips)
    assert all(c[-1] <= 19 for c in clips)
    u = S.UniformClips(clip_len=4, stride=1, num_clips=3)(20)
    assert _starts(u) == [0, 8, 16]
    assert np.array_equal(S.clip_indices(3, 4, 2, 8), [3, 5, 7, 7])
    assert S.max_start(20, 4, 2) == 13


@pytest.mark.parametrize("name", ["random", "uniform", "mds", "mcl", "segments"])
def test_registry_and_deterministic_given_seed(name):
    sampler = S.make_sampler(name, clip_len=4, stride=2)
    info = {"mds_chosen": np.arange(60) % 3 == 0, "mcl_clip_score": np.arange(60.0),
            "segments": np.array([0, 20, 40, 60])}
    for inf in (None, info):
        a = sampler(60, np.random.default_rng(11), inf)
        b = sampler(60, np.random.default_rng(11), inf)
        assert all(np.array_equal(x, y) for x, y in zip(a, b))
        assert all(len(c) == 4 and 0 <= c.min() and c.max() < 60 for c in a)
    with pytest.raises(ValueError):
        S.make_sampler("nope")


def test_mds_pairs_use_chosen_starts():
    n, hi = 100, S.max_start(100, 8, 2)
    chosen = np.zeros(hi + 1, bool)
    chosen[[10, 11, 12, 40, 41, 70]] = True
    sampler = S.MDSPair(clip_len=8, stride=2)  # max shift 16
    rng = np.random.default_rng(0)
    qs, shifts = [], []
    for _ in range(300):
        q, k = _starts(sampler(n, rng, {"mds_chosen": chosen}))
        assert chosen[q] and chosen[k]
        qs.append(q)
        shifts.append(k - q)
    assert set(qs) == {10, 11, 12, 40, 41, 70}  # uniform over the chosen starts
    assert max(abs(s) for s in shifts) <= 30  # bounded: shift <= 16, then snapped
    assert any(s != 0 for s in shifts)
    # snapping to the nearest chosen start: from 70, 70 + [-16, 16] snaps to 41 (54, 55)
    # or 70; from 10, 10 + [-16, 16] stays in {10, 11, 12} (26 ties 12/40 -> earlier)
    assert {q + s for q, s in zip(qs, shifts) if q == 70} == {41, 70}
    assert {q + s for q, s in zip(qs, shifts) if q == 10} <= {10, 11, 12}
    d = S.MDSPair(clip_len=8, stride=2, distinct=True)
    assert all(len(set(_starts(d(n, rng, {"mds_chosen": chosen})))) == 2 for _ in range(50))


def test_mds_falls_back_to_random_without_index_or_motion():
    s = S.MDSPair(clip_len=4, stride=1)
    for info in (None, {"mds_chosen": np.zeros(50, bool)}):
        starts = {q for _ in range(200) for q in _starts(s(50, np.random.default_rng(_), info))}
        assert len(starts) > 20 and max(starts) <= S.max_start(50, 4, 1)


def test_mcl_triplets_motion_focused_halves():
    n = 90  # clip 16 stride 2 spans 31 frames; halves [0, 45) and [45, 90)
    hi = S.max_start(n, 16, 2)
    assert hi == 59
    score = np.zeros(hi + 1)
    # first half: starts 0..14 (the clip ends by frame 44); top int(0.5 * 15) + 1 = 8
    score[[2, 3, 5, 7, 9, 1, 11, 13]] = [9, 8, 7, 6, 5, 4, 3, 2]
    # second half: starts 45..59; the high score at 30 lies between the halves: never drawn
    score[[45, 47, 49, 51, 53, 55, 57, 59, 30]] = [9, 8, 7, 6, 5, 4, 3, 2, 99]
    ordered = S.MCLTriplet(p_motion=1.0, p_ordered=1.0)
    rng = np.random.default_rng(0)
    for _ in range(100):
        q, a, b = _starts(ordered(n, rng, {"mcl_clip_score": score}))
        assert q in {1, 2, 3, 5, 7, 9, 11, 13}
        assert {a, b} <= {45, 47, 49, 51, 53, 55, 57, 59}
        assert q < a < b  # others distinct and in time order
    reverse = S.MCLTriplet(p_motion=1.0, p_ordered=0.0)
    q, a, b = _starts(reverse(n, rng, {"mcl_clip_score": score}))
    assert q >= 45 and a < b <= 14
    plain = S.MCLTriplet(p_motion=0.0, p_ordered=1.0)
    qs = {_starts(plain(n, rng, {"mcl_clip_score": score}))[0] for _ in range(400)}
    assert qs == set(range(15))  # every first-half start, not only high-motion ones


def test_mcl_triplets_short_video_falls_back_to_sorted_random_starts():
    # 40 frames < two spans of 31: MCL draws three sorted random starts over the video
    s = S.MCLTriplet(p_motion=1.0, p_ordered=1.0)
    for seed in range(50):
        q, a, b = _starts(s(40, np.random.default_rng(seed), None))
        assert q < a < b <= S.max_start(40, 16, 2)


def test_segments_cover_video_and_sample_inside():
    b = S.segment_bounds(100, 3)
    assert b[0] == 0 and b[-1] == 100 and np.all(np.diff(b) > 0)
    seg = S.SegmentClips(num_segments=3, clip_len=1, per_segment=2)
    rng = np.random.default_rng(0)
    for _ in range(50):
        st = np.array(_starts(seg(100, rng))).reshape(2, 3)  # query set, key set
        for s in range(3):
            assert b[s] <= st[0, s] < b[s + 1] and b[s] <= st[1, s] < b[s + 1]
            assert st[0, s] != st[1, s]  # two distinct frames per segment
    ev = S.SegmentClips(num_segments=4, clip_len=8, stride=2)
    assert _starts(ev(100)) == _starts(ev(100)) == [12, 37, 62, 85]  # centres; last clamped to 85
    custom = {"segments": np.array([0, 10, 90, 100])}  # index-provided bounds are used
    st = _starts(S.SegmentClips(num_segments=3)(100, rng, custom))
    assert st[0] < 10 <= st[1] < 90 <= st[2]
    tiny = S.SegmentClips(num_segments=5, clip_len=4)(3, rng)  # shorter than the segments
    assert all(c.max() <= 2 for c in tiny)
