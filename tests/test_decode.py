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


def _textured_frames(n=40, w=128, h=96):
    import cv2
    rng = np.random.default_rng(0)
    bg = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (7, 7), 2.0)
    return np.stack([np.roll(np.roll(bg, 3 * t, axis=1), t, axis=0) for t in range(n)])


def _encode(frames, path, codec_args):
    import subprocess
    from motionclr.pipeline.decode import ffmpeg_exe
    t, h, w, _ = frames.shape
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt",
                    "rgb24", "-s", f"{w}x{h}", "-r", "25", "-i", "pipe:", *codec_args,
                    "-pix_fmt", "yuv420p", str(path)], input=frames.tobytes(), check=True)


# (name, encoder arguments, where the file is cut). mpeg4 in .avi and in a faststart .mp4
# (index in front, so the cut leaves samples the index promises): ffmpeg conceals the cut
# frame. x264 with B-frames: the cut drops a frame in the middle of the display order.
CUTS = [("mpeg4_80.avi", ["-c:v", "mpeg4", "-q:v", "3", "-g", "12"], 0.8),
        ("mpeg4_faststart_70.mp4", ["-c:v", "mpeg4", "-q:v", "3", "-g", "12", "-movflags", "+faststart"], 0.7),
        ("x264_bframes_60.mp4", ["-c:v", "libx264", "-g", "12", "-movflags", "+faststart"], 0.6)]


@pytest.mark.parametrize("name,codec,frac", CUTS, ids=[c[0] for c in CUTS])
def test_truncated_file_yields_exactly_the_complete_files_first_frames(tmp_path, name, codec,
                                                                       frac):
    """A cut file gives whole frames only: each equals the complete file's frame exactly
    (no concealed last frame), and ffmpeg's complaint is returned to be recorded."""
    full_path, cut_path = tmp_path / name, tmp_path / f"cut-{name}"
    _encode(_textured_frames(), full_path, codec)
    data = full_path.read_bytes()
    cut_path.write_bytes(data[: int(len(data) * frac)])
    full, _ = decode_video(full_path, short_side=0)
    cut, info = decode_video(cut_path, short_side=0)
    assert 2 <= len(cut) < len(full)
    for i in range(len(cut)):
        assert np.array_equal(cut[i], full[i]), f"frame {i} of {len(cut)} differs"
    assert info["decode_errors"], "the damage ffmpeg saw is not recorded"
    # Resampled (fps filter) decoding keeps to whole frames too.
    cut10, _ = decode_video(cut_path, short_side=0, fps=12.5)
    full10, _ = decode_video(full_path, short_side=0, fps=12.5)
    assert 1 <= len(cut10) < len(full10)
    assert all(np.array_equal(cut10[i], full10[i]) for i in range(len(cut10)))


def test_whole_prefix_stops_at_the_first_timestamp_gap():
    from motionclr.pipeline.decode import whole_prefix
    assert whole_prefix([0, 1, 2, 3]) == 4
    assert whole_prefix([0, 512, 1024, 2048, 2560]) == 3   # 1536 was dropped
    assert whole_prefix([0, 1, 1, 2]) == 2                 # not increasing: stop
    assert whole_prefix([5]) == 1
