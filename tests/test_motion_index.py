"""Motion index: MSCL MDS scores and chosen starts, MCL maps/scores, VCLR segments."""
import dataclasses
import warnings

import numpy as np
import pytest

from motionclr.datasets.samplers import MDSPair, MCLTriplet, max_start
from motionclr.flow.quantize import quantize
from motionclr.pipeline import motion_index as MI

BOUND = 20.0


def _video(n_flow=40, H=32, W=40, moving_from=20, seed=0):
    """Zero flow, then a square at the top-left whose motion changes direction every frame."""
    rng = np.random.default_rng(seed)
    flow = np.zeros((n_flow, H, W, 2), np.float32)
    for t in range(moving_from, n_flow):
        a = rng.uniform(0, 2 * np.pi)
        flow[t, 4:12, 4:14] = 6 * np.cos(a), 6 * np.sin(a)
    return flow


def test_colour_wheel_directions():
    u = np.array([[1.0, -1.0, 0.0, 0.0]])
    v = np.array([[0.0, 0.0, 1.0, 0.0]])
    c = MI.flow_to_color(u, v, 1.0)[0]
    assert c[0, 0] > 0.9 and c[0, 1] < 0.1          # +x: red
    assert c[1, 0] < 0.1 and c[1, 1:].min() > 0.8   # -x: cyan
    assert np.allclose(c[3], 1.0)                   # no motion: white
    assert len(MI._colorwheel()) == 55


def test_mds_scores_follow_motion_changes_and_chosen_above_median():
    flow = _video()
    idx = MI.compute_index(quantize(flow, BOUND), BOUND)
    fs = idx["mds_frame_score"]
    assert fs.shape == (40,) and fs.dtype == np.float32
    assert np.all(fs[:18] < 1e-6)           # static part: no attention, no differential
    assert fs[21:-1].min() > 1e-3 and fs[21:-1].mean() > 0.02  # direction changes each frame
    assert fs[-1] == 0  # the last frame has no next one (MSCL: differenced with itself)
    clip = idx["mds_clip_score"]
    assert clip.shape == (max_start(41, 8, 4) + 1,)
    assert np.array_equal(idx["mds_chosen"], clip > np.median(clip))
    chosen = np.flatnonzero(idx["mds_chosen"])
    assert chosen.size and chosen.min() >= 20 - 28  # windows reaching the moving part
    assert clip[chosen].min() > clip[~idx["mds_chosen"]].max()
    # clip score = mean of frame scores i, i+4, ..., i+28 (flow-index units)
    assert clip[3] == pytest.approx(fs[3:32:4].mean(), rel=1e-5)


def test_mds_score_is_chunk_invariant():
    flow = _video(n_flow=12, H=16, W=16, moving_from=2)
    a = MI.mds_frame_scores(flow, BOUND, chunk=5)
    b = MI.mds_frame_scores(flow, BOUND, chunk=64)
    assert np.allclose(a, b, atol=1e-6)
    # MSCL's script: the last frame is differenced with a copy of itself, so it scores 0
    assert a[-1] == 0 and a[-2] > 0


def test_mcl_maps_locate_motion_and_scores_rank_starts():
    flow = _video(n_flow=60, H=56, W=56, moving_from=40)
    idx = MI.compute_index(quantize(flow, BOUND), BOUND)
    maps, score = idx["mcl_map"], idx["mcl_clip_score"]
    assert maps.shape == (60, 7, 7) and score.shape == (max_start(61, 16, 2) + 1,)
    m = MI.clip_motion_map(maps, np.arange(40, 56, 1))
    r, c = np.unravel_index(m.argmax(), m.shape)
    assert r <= 1 and c <= 1                  # the square sits in the top-left cells
    assert np.all(maps[:30] < 1e-6)           # windows of 8 before frame 32 see no motion
    assert score[29] > score[0] and score[0] < 1e-6  # start 29 covers flows 29..60
    # the MCL sampler, with motion always on, draws query/others among the high scorers
    trip = MCLTriplet(p_motion=1.0)
    assert all(s >= 0 for s in trip.starts(61, np.random.default_rng(0), idx))


def test_segments_cover_the_video():
    idx = MI.compute_index(np.full((29, 8, 8, 2), 128, np.uint8), BOUND,
                           MI.IndexParams(num_segments=4))
    seg = idx["segments"]
    assert seg[0] == 0 and seg[-1] == 30 == idx["n_frames"] and len(seg) == 5
    assert np.all(np.diff(seg) > 0)
    assert not idx["mds_chosen"].any()  # a motionless video has nothing above its median


def test_params_in_cache_key_and_validation():
    key = MI.index_key(MI.IndexParams())
    assert key["index_version"] == MI.INDEX_VERSION
    assert set(f.name for f in dataclasses.fields(MI.IndexParams)) <= set(key)
    assert MI.index_key(MI.IndexParams(mds_pool=14)) != key
    with pytest.raises(ValueError):
        MI.IndexParams(mds_color_norm="nope")
    with pytest.raises(ValueError):
        MI.compute_index(np.zeros((4, 8, 8, 3), np.uint8), BOUND)


def test_mds_sampler_on_real_index():
    flow = _video(n_flow=80, H=24, W=24, moving_from=50)
    idx = MI.compute_index(quantize(flow, BOUND), BOUND)
    sampler = MDSPair(clip_len=8, stride=4)
    rng = np.random.default_rng(0)
    for _ in range(50):
        q, k = (int(c[0]) for c in sampler(81, rng, idx))
        assert idx["mds_chosen"][q] and idx["mds_chosen"][k]


def test_block_mean_exact_and_tiny_frames():
    x = np.arange(4 * 6, dtype=np.float64).reshape(4, 6)
    assert np.allclose(MI.block_mean(x, 2, 3), x.reshape(2, 2, 3, 2).mean(axis=(1, 3)))
    tiny = MI.compute_index(np.random.default_rng(0).integers(0, 256, (2, 3, 5, 2), np.uint8),
                            BOUND)
    assert all(np.all(np.isfinite(v)) for v in tiny.values())


def test_index_store_round_trip(tmp_path):
    params = MI.IndexParams()
    index = {f"cls/v{i}": MI.compute_index(quantize(_video(n_flow=20, H=16, W=16, seed=i),
                                                    BOUND), BOUND, params) for i in range(2)}
    path = MI.write_index(tmp_path / "index.h5", index, params)
    store = MI.IndexStore(path)
    assert len(store) == 2 and "cls/v1" in store and store.get("nope") is None
    assert store.key == MI.index_key(params)
    got = store.get("cls/v1")
    assert set(got) == set(index["cls/v1"])
    assert all(np.array_equal(got[k], index["cls/v1"][k]) for k in got)
    assert got["mds_chosen"].dtype == bool


def test_mcl_sampling_says_when_a_video_cannot_hold_two_disjoint_halves():
    """The fallback to random (overlapping) starts switches the motion-focused halves off
    for that video; it is MCL's own behaviour, but never silent."""
    trip = MCLTriplet(clip_len=8, stride=4, p_motion=1.0)  # a 29-frame span
    with pytest.warns(UserWarning, match="48-frame video cannot hold two disjoint halves"):
        trip.starts(48, np.random.default_rng(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = trip.starts(58, np.random.default_rng(0))  # 2 x 29 fits: no fallback
    assert (s[0] < 29) != (s[1] < 29)
