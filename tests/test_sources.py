import pytest

from motionclr.datasets.sources import list_videos
from motionclr.datasets.sources.base import resolve_inside
from motionclr.datasets.sources.ucf101 import check_group_leakage


def _fake_ucf(root, sub=""):
    base = root / sub if sub else root
    split_dir = root / "ucfTrainTestlist"
    split_dir.mkdir(parents=True)
    (split_dir / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 HandstandPushups\n")
    (split_dir / "trainlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\n"
        "HandstandPushups/v_HandStandPushups_g09_c02.avi 2\n")
    (split_dir / "testlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\n")
    for rel in ["ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi",
                "HandstandPushups/v_HandStandPushups_g09_c02.avi",
                "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"]:
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_bytes(b"x")


@pytest.mark.parametrize("sub", ["", "UCF101"])
def test_ucf101_split_parsing_zero_based(tmp_path, sub):
    _fake_ucf(tmp_path, sub)
    entries = list_videos("ucf101", tmp_path, split=1)
    assert [(e.label, e.label_name, e.subset) for e in entries] == [
        (0, "ApplyEyeMakeup", "train"), (1, "HandstandPushups", "train"),
        (0, "ApplyEyeMakeup", "test")]
    assert entries[1].group == "HandstandPushups_g09"
    assert entries[2].video_id == "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01"
    assert all(e.path.is_file() for e in entries)
    assert check_group_leakage(entries) == []


def test_group_spanning_train_and_test_is_refused(tmp_path):
    _fake_ucf(tmp_path)
    (tmp_path / "ucfTrainTestlist/testlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c02.avi\n")
    with pytest.raises(ValueError, match="ApplyEyeMakeup_g08"):
        list_videos("ucf101", tmp_path)


def test_wrong_root_lists_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="classInd.txt"):
        list_videos("ucf101", tmp_path / "nowhere")


def test_label_mismatch_and_bad_split(tmp_path):
    _fake_ucf(tmp_path)
    with pytest.raises(ValueError, match="split must be"):
        list_videos("ucf101", tmp_path, split=4)
    (tmp_path / "ucfTrainTestlist/trainlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 2\n")
    with pytest.raises(ValueError, match="classInd says 1"):
        list_videos("ucf101", tmp_path)


def test_paths_must_stay_inside_root(tmp_path):
    with pytest.raises(ValueError, match="inside"):
        resolve_inside(tmp_path, "../etc/passwd")
    with pytest.raises(ValueError, match="relative"):
        resolve_inside(tmp_path, "/etc/passwd")


def test_unknown_dataset_lists_valid():
    with pytest.raises(ValueError, match="ucf101"):
        list_videos("ucf1O1", ".")


def test_synthetic_dataset_is_deterministic_and_motion_defined(tmp_path):
    from motionclr.datasets.synthetic import CLASSES, generate, render_video
    import numpy as np
    a = render_video(0, np.random.default_rng([0, 0, 1, 1]), 6, (48, 32))
    b = render_video(0, np.random.default_rng([0, 0, 1, 1]), 6, (48, 32))
    assert np.array_equal(a, b)
    root = generate(tmp_path, groups=2, clips=1, n_frames=6, size=(48, 32))
    entries = list_videos("synthetic", root)
    assert len(entries) == 2 * len(CLASSES)
    assert {e.subset for e in entries if e.group.endswith("g01")} == {"test"}


@pytest.mark.parametrize("label", range(8))
def test_synthetic_class_motion_matches_its_name(label):
    """The flow of every class is what the class name says (OpenCV DIS on rendered frames):
    pans give mean (dx, dy) in the named direction, rotations the named curl sign (screen y
    points down, so clockwise on screen is positive curl), zooms the named divergence."""
    import numpy as np
    from motionclr.datasets.synthetic import CLASSES, render_video
    from motionclr.flow.opencv import dis
    frames = render_video(label, np.random.default_rng([3, label]), 6, (96, 72))
    flow = dis(frames).astype(np.float64)[:, 12:-12, 12:-12]  # (T-1, H, W, 2), border off
    dx, dy = flow[..., 0], flow[..., 1]
    curl = (np.gradient(dy, axis=2) - np.gradient(dx, axis=1)).mean()
    div = (np.gradient(dx, axis=2) + np.gradient(dy, axis=1)).mean()
    mx, my = dx.mean(), dy.mean()
    name = CLASSES[label]
    expect = {"MoveRight": mx > 0.8 and abs(my) < 0.3, "MoveLeft": mx < -0.8 and abs(my) < 0.3,
              "MoveDown": my > 0.8 and abs(mx) < 0.3, "MoveUp": my < -0.8 and abs(mx) < 0.3,
              "RotateClockwise": curl > 0.02 and abs(div) < curl / 3,
              "RotateAnticlockwise": curl < -0.02 and abs(div) < -curl / 3,
              "ZoomIn": div > 0.01 and abs(curl) < div / 3,
              "ZoomOut": div < -0.01 and abs(curl) < -div / 3}[name]
    assert expect, (name, mx, my, curl, div)
