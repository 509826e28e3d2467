import numpy as np
import pytest

from motionclr.datasets.synthetic import encode_video
from motionclr.pipeline.decode import DecodeError, decode_video, probe, target_size


def test_decodes_real_clip_with_exact_count_and_short_side(tmp_path):
    frames = np.random.default_rng(1).integers(0, 255, (17, 48, 64, 3), dtype=np.uint8)
    path = tmp_path / "v.avi"
    encode_video(frames, path)
    out, info = decode_video(path, short_side=24)
    assert out.dtype == np.uint8 and out.shape == (17, 24, 32, 3)
    assert info["n_frames"] == 17 and info["src_width"] == 64 and info["src_height"] == 48


def test_native_size_keeps_content(moving_square_video):
    path, frames = moving_square_video
    out, info = decode_video(path, short_side=0)
    assert out.shape == frames.shape
    # MPEG-4 at q3 is lossy but close: mean abs error of a few grey levels.
    assert np.abs(out.astype(int) - frames.astype(int)).mean() < 12


def test_sample_clip_mp4():
    from motionclr import samples
    path = samples.path("bunny_wide")
    meta = probe(path)
    out, info = decode_video(path, short_side=64, max_frames=20)
    assert (meta["width"], meta["height"]) == (640, 272)
    assert out.shape[0] == 20 and out.shape[1] == 64
    assert info["fps"] == pytest.approx(25.0)


def test_fps_resampling_changes_count(tmp_path):
    frames = np.random.default_rng(2).integers(0, 255, (25, 32, 32, 3), dtype=np.uint8)
    path = tmp_path / "v.avi"
    encode_video(frames, path, fps=25)
    out, info = decode_video(path, short_side=0, fps=10)
    assert info["fps"] == 10 and 9 <= out.shape[0] <= 11


@pytest.mark.parametrize("content,reason", [
    (b"", "empty"),
    (b"this is not a video at all\n" * 10, "no decodable video stream"),
    (b"RIFF\x00\x00\x00\x00AVI LIST" + bytes(200), "no decodable video stream"),
])
def test_bad_files_raise_with_reason(tmp_path, content, reason):
    p = tmp_path / "bad.avi"
    p.write_bytes(content)
    with pytest.raises(DecodeError, match=reason):
        decode_video(p)


def test_truncated_file_keeps_whole_frames_or_fails_clearly(tmp_path):
    frames = np.random.default_rng(3).integers(0, 255, (30, 48, 64, 3), dtype=np.uint8)
    path = tmp_path / "v.avi"
    encode_video(frames, path)
    data = path.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    try:
        out, info = decode_video(cut, short_side=0)
    except DecodeError as e:
        assert str(e)
    else:
        assert 0 < info["n_frames"] < 30 and out.shape[0] == info["n_frames"]


def test_missing_file():
    with pytest.raises(DecodeError, match="not a file"):
        decode_video("does/not/exist.avi")


def test_target_size_even_and_short_side():
    assert target_size(320, 240, 128) == (170, 128)
    assert target_size(240, 320, 128) == (128, 170)
    assert target_size(321, 241, 0) == (320, 240)
