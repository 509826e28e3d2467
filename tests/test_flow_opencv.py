import numpy as np
import pytest

from motionclr.flow import compute_flow


def _shifted(dx: int, dy: int, n: int = 3):
    rng = np.random.default_rng(0)
    import cv2
    tex = cv2.GaussianBlur(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8), (5, 5), 1.5)
    return np.stack([np.roll(tex, (dy * t, dx * t), axis=(0, 1)) for t in range(n)])


@pytest.mark.parametrize("method", ["tvl1", "farneback", "dis"])
def test_positive_x_translation_gives_positive_dx(method):
    flow = compute_flow(_shifted(2, 0), method=method)
    assert flow.shape == (2, 64, 80, 2) and flow.dtype == np.float32
    inner = flow[:, 10:-10, 10:-10]
    assert np.median(inner[..., 0]) == pytest.approx(2.0, abs=0.3)
    assert abs(np.median(inner[..., 1])) < 0.3


@pytest.mark.parametrize("method", ["tvl1", "farneback"])
def test_positive_y_translation_gives_positive_dy(method):
    inner = compute_flow(_shifted(0, 1), method=method)[:, 10:-10, 10:-10]
    assert np.median(inner[..., 1]) == pytest.approx(1.0, abs=0.3)
    assert abs(np.median(inner[..., 0])) < 0.3


def test_zero_motion_zero_flow():
    frames = _shifted(0, 0)
    assert np.abs(compute_flow(frames, method="tvl1")).max() < 0.05


def test_params_are_configurable_and_checked():
    frames = _shifted(1, 0)
    fast = compute_flow(frames, method="tvl1", nscales=1, warps=1)
    assert fast.shape == (2, 64, 80, 2)
    with pytest.raises(ValueError, match="valid"):
        compute_flow(frames, method="tvl1", nscale=3)
    with pytest.raises(ValueError, match="valid"):
        compute_flow(frames, method="nope")
