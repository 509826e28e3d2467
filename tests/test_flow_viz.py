"""Flow colour coding, strips, mp4 output and the ``motionclr viz`` entry point."""
import cv2
import numpy as np
import pytest

from motionclr.flow import synthetic as S
from motionclr.flow.viz import flow_to_color, main, make_colorwheel, side_by_side, strip


def _one(dx, dy, max_flow=1.0):
    return flow_to_color(np.array([[[dx, dy]]], np.float32), max_flow)[0, 0].astype(int)


def test_colorwheel_is_middlebury():
    wheel = make_colorwheel()
    assert wheel.shape == (55, 3)
    np.testing.assert_array_equal(wheel[0], [255, 0, 0])      # RY starts at red
    np.testing.assert_array_equal(wheel[15], [255, 255, 0])   # YG starts at yellow
    np.testing.assert_array_equal(wheel[21], [0, 255, 0])     # GC starts at green
    np.testing.assert_array_equal(wheel[25], [0, 255, 255])   # CB starts at cyan
    np.testing.assert_array_equal(wheel[36], [0, 0, 255])     # BM starts at blue
    np.testing.assert_array_equal(wheel[49], [255, 0, 255])   # MR starts at magenta


def test_directions_and_magnitude():
    np.testing.assert_array_equal(_one(0, 0), [255, 255, 255])     # no motion: white
    np.testing.assert_array_equal(_one(1, 0), [255, 0, 0])         # +x: red
    left = _one(-1, 0)
    assert left[2] == 255 and left[1] > 150 and left[0] == 0       # -x: cyan-blue
    down, up = _one(0, 1), _one(0, -1)
    assert down[0] == 255 and down[1] > 200 and down[2] == 0       # +y (down): orange-yellow
    assert up[2] == 255 and up[0] > 50 and up[1] == 0              # -y (up): blue-violet
    half = _one(0.5, 0)
    assert half[0] == 255 and 120 < half[1] < 135                  # half saturation: pink
    np.testing.assert_array_equal(_one(2, 0), [191, 0, 0])         # beyond max_flow: darkened


def test_default_max_flow_is_the_largest_magnitude():
    flow = np.zeros((2, 3, 4, 2), np.float32)
    flow[1, 0, 0] = (0, 3)
    flow[0, 1, 1] = (3, 0)
    col = flow_to_color(flow)
    np.testing.assert_array_equal(col[0, 1, 1], [255, 0, 0])
    assert col.shape == (2, 3, 4, 3) and col.dtype == np.uint8


def test_strip_and_side_by_side_layout():
    rgb = S.load_clip("bunny_wide", size=(32, 40), start=10, n_frames=9)
    flow = np.random.default_rng(0).normal(0, 2, (8, 32, 40, 2)).astype(np.float32)
    sbs = side_by_side(rgb, flow)
    assert sbs.shape == (8, 32, 80, 3)
    np.testing.assert_array_equal(sbs[:, :, :40], rgb[:-1])
    np.testing.assert_array_equal(sbs[:, :, 40:], flow_to_color(flow))
    img = strip(rgb, flow, rows=3)
    assert img.shape == (96, 80, 3)
    np.testing.assert_array_equal(img[32:64], sbs[4])  # evenly spaced: pairs 0, 4, 7 (rounded)
    with pytest.raises(ValueError, match="do not match"):
        side_by_side(rgb, flow[:-2])


@pytest.mark.parametrize("suffix", [".png", ".mp4"])
def test_main_renders_a_cached_video(tiny_stage, tmp_path, suffix):
    """A real finished stage: the strip is exactly ``strip`` of the stored video."""
    import json

    from motionclr.flow.quantize import dequantize
    from motionclr.storage.shards import read_video
    _, stage = tiny_stage
    vid = json.loads((stage / "manifest.json").read_text())["videos"][0]["video_id"]
    rgb, q, attrs = read_video(stage, vid)
    flow = dequantize(q, float(attrs["bound"]))
    out = tmp_path / f"viz{suffix}"
    assert main(["--cache", str(stage), "--video", vid, "--out", str(out)]) == 0
    if suffix == ".png":
        img = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(img, strip(rgb, flow, 6))
    else:
        h, w = rgb.shape[1:3]
        cap = cv2.VideoCapture(str(out))
        n = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            n += 1
            assert frame.shape == (h + h % 2, 2 * w + (2 * w) % 2, 3)  # yuv420p: even sizes
        assert n == len(flow)
