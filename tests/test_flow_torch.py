"""tvl1_torch: building blocks against OpenCV, parity with cv2.optflow TV-L1, batch invariance."""
import cv2
import numpy as np
import pytest
import torch

from motionclr.flow import compute_flow
from motionclr.flow import synthetic as S
from motionclr.flow.opencv import tvl1
from motionclr.flow.tvl1_torch import (median_filter, remap, resize_linear, rgb_to_gray,
                                       tvl1_pairs, tvl1_torch)

SIZE = (64, 80)  # small images keep each OpenCV-parity case well under a second


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def cases():
    return {c.name: c for c in S.synthetic_suite(SIZE, include_large=False, border=4)}


def test_rgb_to_gray_is_bit_exact_with_opencv():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    ref = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in rgb]).astype(np.float32)
    np.testing.assert_array_equal(rgb_to_gray(torch.from_numpy(rgb)).numpy(), ref)


def test_remap_matches_cv2_remap_bicubic_with_zero_border():
    rng = np.random.default_rng(1)
    img = (rng.random((30, 41)) * 255).astype(np.float32)
    mx = (np.arange(41)[None] + rng.normal(0, 3, (30, 41))).astype(np.float32)
    my = (np.arange(30)[:, None] + rng.normal(0, 3, (30, 41))).astype(np.float32)
    ref = cv2.remap(img, mx, my, cv2.INTER_CUBIC)  # default BORDER_CONSTANT 0
    out = remap(torch.from_numpy(img)[None, None], torch.from_numpy(mx)[None],
                torch.from_numpy(my)[None])[0, 0].numpy()
    assert np.abs(out - ref).max() < 1e-2  # grey levels; taps outside count as 0 in both


def test_resize_linear_matches_cv2_resize_down_and_up():
    rng = np.random.default_rng(2)
    img = (rng.random((37, 53)) * 255).astype(np.float32)
    down = cv2.resize(img, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_LINEAR)
    out = resize_linear(torch.from_numpy(img)[None, None], down.shape, (1 / 0.8, 1 / 0.8))
    np.testing.assert_allclose(out[0, 0].numpy(), down, atol=1e-3)
    up = cv2.resize(down, (53, 37), interpolation=cv2.INTER_LINEAR)
    out = resize_linear(torch.from_numpy(down)[None, None], (37, 53),
                        (down.shape[0] / 37, down.shape[1] / 53))
    np.testing.assert_allclose(out[0, 0].numpy(), up, atol=1e-3)


@pytest.mark.parametrize("k", [3, 5])
def test_median_filter_equals_cv2_median_blur(k):
    u = torch.randn(2, 2, 23, 31)
    ref = np.stack([[cv2.medianBlur(u[b, c].numpy(), k) for c in range(2)] for b in range(2)])
    np.testing.assert_array_equal(median_filter(u, k).numpy(), ref)


def test_opencv_preset_matches_opencv_tvl1(cases):
    for name in ("shift_xy", "rotate", "zoom", "object"):
        c = cases[name]
        ref = tvl1(c.frames)[0]
        ours = tvl1_torch(c.frames, preset="opencv")[0]
        assert S.epe(ours, ref) <= 0.05, name          # the target (all pixels)
        assert S.epe(ours, c.flow, c.valid) <= S.epe(ref, c.flow, c.valid) + 0.01, name


@pytest.mark.parametrize("preset", ["opencv", "fast"])
def test_zero_motion_gives_exactly_zero_flow(cases, preset):
    assert np.count_nonzero(tvl1_torch(cases["zero"].frames, preset=preset)) == 0


def test_fast_preset_recovers_translation(cases):
    c = cases["shift_xy"]
    flow = tvl1_torch(c.frames, preset="fast")[0]
    assert S.epe(flow, c.flow, c.valid) < 0.1
    assert flow[..., 0][c.valid].mean() > 2.3 and flow[..., 1][c.valid].mean() < -1.3


@pytest.mark.parametrize("preset", ["opencv", "fast"])
def test_batch_equals_single_pairs(cases, preset):
    names = ("shift_x", "rotate", "object")
    gray = rgb_to_gray(torch.from_numpy(np.stack([cases[n].frames for n in names])))
    batched = tvl1_pairs(gray[:, 0], gray[:, 1], preset=preset)
    for i in range(len(names)):
        single = tvl1_pairs(gray[i:i + 1, 0], gray[i:i + 1, 1], preset=preset)[0]
        assert (batched[i] - single).abs().max().item() < 1e-3, names[i]


def test_video_batches_equal_one_call():
    frames = S.load_clip("bunny_wide", size=SIZE, start=30, n_frames=4)
    whole = tvl1_torch(frames, preset="fast", batch_size=3)
    chunked = tvl1_torch(frames, preset="fast", batch_size=1)
    assert whole.shape == (3,) + SIZE + (2,) and whole.dtype == np.float32
    assert np.abs(whole - chunked).max() < 1e-3
    assert np.abs(whole).max() > 0.1  # real video: the flow is not trivially zero


def test_tensor_in_tensor_out_and_registry(cases):
    frames = cases["shift_x"].frames
    out = compute_flow(torch.from_numpy(frames), "tvl1_torch", device="cpu", preset="fast")
    assert torch.is_tensor(out) and out.dtype == torch.float32 and out.shape == (1,) + SIZE + (2,)
    np.testing.assert_allclose(out.numpy(), tvl1_torch(frames, preset="fast"), atol=1e-5)
    assert tvl1_torch(frames[:1]).shape == (0,) + SIZE + (2,)


def test_bad_arguments_raise():
    frames = np.zeros((2, 32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="valid:.*inner_iterations"):
        tvl1_torch(frames, inner_iters=3)
    with pytest.raises(ValueError, match="preset"):
        tvl1_torch(frames, preset="slow")
    with pytest.raises(ValueError, match="uint8"):
        tvl1_torch(frames.astype(np.float32))
    # OpenCV spellings are accepted as aliases
    assert tvl1_torch(frames, innnerIterations=2, outerIterations=1).shape == (1, 32, 32, 2)


def test_converged_pairs_leave_the_batch_without_changing_any_result(cases):
    """``compact`` drops stopped pairs from the working set at each check: a zero-motion pair
    stops at once, a shifted one iterates on; both get exactly what they get alone."""
    frames = [cases["zero"].frames, cases["shift_xy"].frames, cases["zoom"].frames]
    g = [rgb_to_gray(torch.from_numpy(f)) for f in frames]
    i0 = torch.stack([x[0] for x in g])
    i1 = torch.stack([x[1] for x in g])
    compact = tvl1_pairs(i0, i1)
    full = tvl1_pairs(i0, i1, compact=False)
    torch.testing.assert_close(compact, full, rtol=0, atol=0)
    for k in range(3):
        torch.testing.assert_close(compact[k:k + 1], tvl1_pairs(i0[k:k + 1], i1[k:k + 1]),
                                   rtol=0, atol=1e-5)
