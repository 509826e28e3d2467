"""HMDB51, Kinetics-400, SSv2 and folder sources on tiny copies of their official layouts.

Each fake dataset holds a few real encoded videos (6 frames of 32x24; one encode per container,
copied) next to annotation files written exactly as the official releases spell them.
"""
from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest

from motionclr.datasets.sources import folder, hmdb51, kinetics, ssv2
from motionclr.datasets.synthetic import encode_video
from motionclr.pipeline.decode import decode_video, ffmpeg_exe

N_FRAMES, W, H = 6, 32, 24


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Container extension -> bytes of a real 6-frame video in that container."""
    d = tmp_path_factory.mktemp("clips")
    frames = np.random.default_rng(0).integers(0, 255, (N_FRAMES, H, W, 3), dtype=np.uint8)
    out = {}
    for ext in (".avi", ".mp4", ".mkv"):
        encode_video(frames, d / f"v{ext}")           # MPEG-4 part 2 fits these containers
        out[ext] = (d / f"v{ext}").read_bytes()
    # WebM only carries VP8/VP9/AV1, so SSv2/Kinetics .webm files need their own encoder.
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt",
                    "rgb24", "-s", f"{W}x{H}", "-r", "25", "-i", "pipe:", "-c:v", "libvpx",
                    "-deadline", "realtime", "-b:v", "200k", "-pix_fmt", "yuv420p",
                    str(d / "v.webm")], input=frames.tobytes(), check=True, capture_output=True)
    out[".webm"] = (d / "v.webm").read_bytes()
    return out


def _put(clips, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(clips[path.suffix])


def _assert_decodes(entries):
    present = [e for e in entries if e.path.is_file()]
    assert present
    for e in present:
        frames, info = decode_video(e.path, short_side=0)
        assert frames.shape == (N_FRAMES, H, W, 3) and info["n_frames"] == N_FRAMES, e.path


# ----------------------------------------------------------------------------- HMDB51

HMDB_SPLIT1 = {  # class -> split-file text, official style (trailing space after the flag)
    "cartwheel": "Bodenturnen_cartwheel_f_cm_np1_le_med_0.avi 2 \n"
                 "Cartwheel_cartwheel_f_cm_np1_ri_bad_1.avi 1 \n",
    "brush_hair": "April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1 \n"
                  "Aussie_Brush_hair_brush_hair_h_cm_np1_ba_med_2.avi 0 \n"
                  "Blonde_being_brushed_brush_hair_f_nm_np2_ri_med_0.avi 2 \n",
}


def _fake_hmdb(root, clips, sub=""):
    splits = root / hmdb51.SPLIT_DIR
    splits.mkdir(parents=True)
    for cls, text in HMDB_SPLIT1.items():
        (splits / f"{cls}_test_split1.txt").write_text(text)
        # split 2 swaps train and test, so the split number demonstrably matters
        (splits / f"{cls}_test_split2.txt").write_text(
            text.replace(" 1 ", " x ").replace(" 2 ", " 1 ").replace(" x ", " 2 "))
        for line in text.splitlines():
            _put(clips, root / sub / cls / line.split()[0])


@pytest.mark.parametrize("sub", ["", "videos", "hmdb51"])
def test_hmdb51_labels_subsets_and_unused_kept(tmp_path, clips, sub):
    _fake_hmdb(tmp_path, clips, sub)
    entries = hmdb51.list_videos(tmp_path, split=1)
    assert [(e.video_id, e.label, e.label_name, e.subset) for e in entries] == [
        ("brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0", 0, "brush_hair", "train"),
        ("cartwheel/Cartwheel_cartwheel_f_cm_np1_ri_bad_1", 1, "cartwheel", "train"),
        ("brush_hair/Blonde_being_brushed_brush_hair_f_nm_np2_ri_med_0", 0, "brush_hair", "test"),
        ("cartwheel/Bodenturnen_cartwheel_f_cm_np1_le_med_0", 1, "cartwheel", "test"),
        ("brush_hair/Aussie_Brush_hair_brush_hair_h_cm_np1_ba_med_2", 0, "brush_hair", "unused"),
    ]
    assert all(e.path.is_file() and e.path.parent.parent == tmp_path / sub for e in entries)
    split2 = {e.video_id: e.subset for e in hmdb51.list_videos(tmp_path, split=2)}
    assert split2["cartwheel/Bodenturnen_cartwheel_f_cm_np1_le_med_0"] == "train"
    assert split2["brush_hair/Aussie_Brush_hair_brush_hair_h_cm_np1_ba_med_2"] == "unused"


def test_hmdb51_errors(tmp_path, clips):
    with pytest.raises(FileNotFoundError, match="testTrainMulti_7030_splits"):
        hmdb51.list_videos(tmp_path / "nowhere")
    _fake_hmdb(tmp_path, clips)
    with pytest.raises(ValueError, match=r"\[1, 2, 3\]"):
        hmdb51.list_videos(tmp_path, split=4)
    with pytest.raises(FileNotFoundError, match="_test_split3.txt"):
        hmdb51.list_videos(tmp_path, split=3)
    split_file = tmp_path / hmdb51.SPLIT_DIR / "cartwheel_test_split1.txt"
    split_file.write_text("Cartwheel_cartwheel_f_cm_np1_ri_bad_1.avi 3 \n")
    with pytest.raises(ValueError, match="expected 0, 1 or 2"):
        hmdb51.list_videos(tmp_path)
    split_file.write_text("../../../etc/passwd.avi 1 \n")
    with pytest.raises(ValueError, match="inside"):
        hmdb51.list_videos(tmp_path)


def test_hmdb51_missing_videos_reported_not_fatal(tmp_path, clips):
    _fake_hmdb(tmp_path, clips)
    (tmp_path / "cartwheel/Cartwheel_cartwheel_f_cm_np1_ri_bad_1.avi").unlink()
    with pytest.warns(UserWarning, match="1 of 5"):
        entries = hmdb51.list_videos(tmp_path)
    assert len(entries) == 5 and sum(not e.path.is_file() for e in entries) == 1
    for p in tmp_path.glob("*/*.avi"):
        p.unlink()
    with pytest.raises(FileNotFoundError, match="none of the 5"):
        hmdb51.list_videos(tmp_path)


def test_hmdb51_videos_decode(tmp_path, clips):
    _fake_hmdb(tmp_path, clips)
    _assert_decodes(hmdb51.list_videos(tmp_path))


# ----------------------------------------------------------------------------- Kinetics-400

K_HEADER = "label,youtube_id,time_start,time_end,split,is_cc\n"


def _fake_kinetics(root, clips, ann_dir="annotations", val_name="validate.csv"):
    ann = root / ann_dir
    ann.mkdir(parents=True, exist_ok=True)
    (ann / "train.csv").write_text(
        K_HEADER + "abseiling,-3B32lodo2M,59,69,train,0\n"
        '"passing American football (in game)",0aX_9Lh3Y1s,4,14,train,0\n'
        "abseiling,zzMissing01,10,20,train,0\n")
    (ann / val_name).write_text(K_HEADER + "air drumming,--nQbRBEz2s,104,114,val,0\n")
    # the original test release has no label column
    (ann / "test.csv").write_text("youtube_id,time_start,time_end,split\n"
                                  "-_uIxzr_o5k,1,11,test\n")
    # train in per-label folders (underscored names), val flat, test flat in another container
    _put(clips, root / "train/abseiling/-3B32lodo2M_000059_000069.mp4")
    _put(clips, root / "train/passing_American_football_(in_game)/0aX_9Lh3Y1s_000004_000014.mp4")
    _put(clips, root / "val/--nQbRBEz2s_000104_000114.webm")
    _put(clips, root / "test/-_uIxzr_o5k_000001_000011.mkv")


@pytest.mark.parametrize("ann_dir,val_name", [("annotations", "validate.csv"), ("", "val.csv")])
def test_kinetics_labels_subsets_and_missing_reported(tmp_path, clips, ann_dir, val_name):
    _fake_kinetics(tmp_path, clips, ann_dir, val_name)
    with pytest.warns(UserWarning, match="1 of 5 listed videos are missing"):
        entries = kinetics.list_videos(tmp_path)
    assert [(e.video_id, e.label, e.label_name, e.subset) for e in entries] == [
        ("train/abseiling/-3B32lodo2M_000059_000069", 0, "abseiling", "train"),
        ("train/passing_American_football_(in_game)/0aX_9Lh3Y1s_000004_000014", 2,
         "passing American football (in game)", "train"),
        ("train/zzMissing01_000010_000020", 0, "abseiling", "train"),
        ("val/--nQbRBEz2s_000104_000114", 1, "air drumming", "val"),
        ("test/-_uIxzr_o5k_000001_000011", -1, "", "test"),
    ]
    assert [e.path.is_file() for e in entries] == [True, True, False, True, True]
    assert len({e.video_id for e in entries}) == len(entries)


def test_kinetics_errors(tmp_path, clips):
    with pytest.raises(FileNotFoundError, match="train.csv"):
        kinetics.list_videos(tmp_path / "nowhere")
    _fake_kinetics(tmp_path, clips)
    with pytest.raises(ValueError, match=r"valid: \[1\]"):
        kinetics.list_videos(tmp_path, split=2)
    for p in [p for p in tmp_path.rglob("*") if p.suffix in kinetics.EXTS]:
        p.unlink()
    with pytest.raises(FileNotFoundError, match="none of the 5"):
        kinetics.list_videos(tmp_path)
    (tmp_path / "annotations/train.csv").write_text(K_HEADER + "abseiling,../../etc,1,2,train,0\n")
    with pytest.raises(ValueError, match="bad youtube_id"):
        kinetics.list_videos(tmp_path)


def test_kinetics_videos_decode(tmp_path, clips):
    _fake_kinetics(tmp_path, clips)
    with pytest.warns(UserWarning):
        entries = kinetics.list_videos(tmp_path)
    assert {e.path.suffix for e in entries if e.path.is_file()} == {".mp4", ".webm", ".mkv"}
    _assert_decodes(entries)


# ----------------------------------------------------------------------------- SSv2

SSV2_LABELS = {  # official ids are strings, and not in alphabetical order
    "Pushing something from right to left": "0",
    "Pushing something from left to right": "1",
    "Holding something next to something": "2",
}


def _fake_ssv2(root, clips, video_dir="20bn-something-something-v2", ann="labels", old=False):
    a = root / ann
    a.mkdir(parents=True, exist_ok=True)
    name = (lambda n: f"something-something-v2-{n}.json") if old else (lambda n: f"{n}.json")
    (a / name("labels")).write_text(json.dumps(SSV2_LABELS, indent=1))
    (a / name("train")).write_text(json.dumps([
        {"id": "78687", "label": "pushing pen from left to right",
         "template": "Pushing [something] from left to right", "placeholders": ["pen"]},
        {"id": "42326", "label": "holding potato next to vicks vaporub bottle",
         "template": "Holding [something] next to [something]",
         "placeholders": ["potato", "vicks vaporub bottle"]}]))
    (a / name("validation")).write_text(json.dumps([
        {"id": "74225", "label": "pushing cup from right to left",
         "template": "Pushing [something] from right to left", "placeholders": ["cup"]}]))
    (a / name("test")).write_text(json.dumps([{"id": "1420"}]))
    for vid in ("78687", "42326", "74225", "1420"):
        _put(clips, root / video_dir / f"{vid}.webm")


@pytest.mark.parametrize("video_dir,ann,old", [
    ("20bn-something-something-v2", "labels", False), ("videos", "", True)])
def test_ssv2_labels_from_templates_and_flip_off(tmp_path, clips, video_dir, ann, old):
    _fake_ssv2(tmp_path, clips, video_dir, ann, old)
    entries = ssv2.list_videos(tmp_path)
    assert [(e.video_id, e.label, e.label_name, e.subset) for e in entries] == [
        (f"{video_dir}/78687", 1, "Pushing something from left to right", "train"),
        (f"{video_dir}/42326", 2, "Holding something next to something", "train"),
        (f"{video_dir}/74225", 0, "Pushing something from right to left", "val"),
        (f"{video_dir}/1420", -1, "", "test"),
    ]
    assert all(e.path.is_file() for e in entries)
    assert ssv2.FLIP_POLICY == "off"  # left-to-right vs right-to-left are different classes


def test_ssv2_test_answers_give_test_labels(tmp_path, clips):
    _fake_ssv2(tmp_path, clips)
    (tmp_path / "labels/test-answers.csv").write_text(
        "1420;Pushing something from left to right\n")
    assert ssv2.list_videos(tmp_path)[-1].label == 1


def test_ssv2_errors_and_missing(tmp_path, clips):
    with pytest.raises(FileNotFoundError, match="labels.json"):
        ssv2.list_videos(tmp_path / "nowhere")
    _fake_ssv2(tmp_path, clips)
    with pytest.raises(ValueError, match=r"valid: \[1\]"):
        ssv2.list_videos(tmp_path, split=3)
    (tmp_path / "20bn-something-something-v2/42326.webm").unlink()
    with pytest.warns(UserWarning, match="1 of 4"):
        entries = ssv2.list_videos(tmp_path)
    assert len(entries) == 4
    val = tmp_path / "labels/validation.json"
    val.write_text(json.dumps([{"id": "5", "template": "Spinning [something]"}]))
    with pytest.raises(ValueError, match="Spinning something"):
        ssv2.list_videos(tmp_path)
    val.write_text(json.dumps([{"id": "../../escape", "template": "Pushing [something] "
                                "from left to right"}]))
    with pytest.raises(ValueError, match="inside"):
        ssv2.list_videos(tmp_path)
    for p in (tmp_path / "20bn-something-something-v2").iterdir():
        p.unlink()
    val.write_text("[]")
    with pytest.raises(FileNotFoundError, match="none of the 3"):
        ssv2.list_videos(tmp_path)


def test_ssv2_videos_decode(tmp_path, clips):
    _fake_ssv2(tmp_path, clips)
    _assert_decodes(ssv2.list_videos(tmp_path))


# ----------------------------------------------------------------------------- folder

def _fake_folder(root, clips, n=6):
    for cls in ("walk", "jump"):
        for i in range(n):
            # one level of sub-folders too: videos grouped by session inside a class
            _put(clips, root / cls / f"s{i % 2}" / f"{cls}_{i}{'.mp4' if i % 3 else '.avi'}")


def test_folder_hash_split_is_deterministic_and_fraction_controls_it(tmp_path, clips):
    _fake_folder(tmp_path, clips)
    entries = folder.list_videos(tmp_path)
    assert len(entries) == 12
    assert {(e.label, e.label_name) for e in entries} == {(0, "jump"), (1, "walk")}
    for e in entries:
        rel = e.path.relative_to(tmp_path).as_posix()
        assert e.video_id == rel.rsplit(".", 1)[0]
        assert e.subset == folder.hash_subset(rel, folder.TEST_FRACTION)
    assert {e.subset for e in entries} == {"train", "test"}
    assert folder.list_videos(tmp_path) == entries
    assert {e.subset for e in folder.list_videos(tmp_path, test_fraction=0.0)} == {"train"}
    assert {e.subset for e in folder.list_videos(tmp_path, test_fraction=1.0)} == {"test"}
    # adding a video does not move the others between train and test
    _put(clips, tmp_path / "jump/new.avi")
    after = {e.video_id: e.subset for e in folder.list_videos(tmp_path)}
    assert all(after[e.video_id] == e.subset for e in entries)
    # hash fractions are near the requested one over many keys
    share = np.mean([folder.hash_subset(f"c/v{i}.mp4", 0.3) == "test" for i in range(2000)])
    assert 0.27 < share < 0.33


def test_folder_train_test_top_level(tmp_path, clips):
    _put(clips, tmp_path / "train/walk/a.mp4")
    _put(clips, tmp_path / "train/jump/b.mp4")
    _put(clips, tmp_path / "val/walk/c.avi")
    _put(clips, tmp_path / "test/run/d.mkv")  # a class only in test still gets an id
    entries = folder.list_videos(tmp_path)
    assert [(e.video_id, e.label, e.label_name, e.subset) for e in entries] == [
        ("train/jump/b", 0, "jump", "train"), ("train/walk/a", 2, "walk", "train"),
        ("val/walk/c", 2, "walk", "val"), ("test/run/d", 1, "run", "test")]


@pytest.mark.parametrize("sep,header", [(",", True), (",", False), ("\t", False)])
def test_folder_table_with_names(tmp_path, clips, sep, header):
    _put(clips, tmp_path / "clips/a.mp4")
    _put(clips, tmp_path / "clips/b.avi")
    _put(clips, tmp_path / "clips/c.mp4")
    rows = [["clips/a.mp4", "walk", "train"], ["clips/b.avi", "jump", "test"],
            ["clips/c.mp4", "walk", "val"]]
    text = ("path,label,split\n".replace(",", sep) if header else "") + "".join(
        sep.join(r) + "\n" for r in rows)
    table = tmp_path / ("annotations.tsv" if sep == "\t" else "annotations.csv")
    table.write_text(text)
    for root in (tmp_path, table):  # the root may be the folder or the file itself
        entries = folder.list_videos(root)
        assert [(e.video_id, e.label, e.label_name, e.subset) for e in entries] == [
            ("clips/a", 1, "walk", "train"), ("clips/b", 0, "jump", "test"),
            ("clips/c", 1, "walk", "val")]
    _assert_decodes(entries)


def test_folder_table_int_labels_groups_missing_and_escapes(tmp_path, clips):
    for name in ("a", "b", "c"):
        _put(clips, tmp_path / f"{name}.mp4")
    table = tmp_path / "annotations.csv"
    table.write_text("path,label,split,group\na.mp4,3,,g1\nb.mp4,3,,g1\nc.mp4,0,test,g2\n"
                     "gone.mp4,1,train,g3\n")
    with pytest.warns(UserWarning, match="1 of 4"):
        entries = folder.list_videos(tmp_path)
    assert [(e.label, e.label_name) for e in entries] == [(3, "3"), (3, "3"), (0, "0"), (1, "1")]
    # rows without a split are hashed by group, so one group never straddles train and test
    assert entries[0].subset == entries[1].subset == folder.hash_subset("g1", 0.3)
    assert entries[2].subset == "test" and entries[0].group == "g1"
    for bad in ("../outside.mp4", "/etc/passwd"):
        table.write_text(f"path,label,split\n{bad},walk,train\n")
        with pytest.raises(ValueError, match="inside"):
            folder.list_videos(tmp_path)
    table.write_text("path,label,split\na.mp4,walk,holdout\n")
    with pytest.raises(ValueError, match="holdout"):
        folder.list_videos(tmp_path)
    table.write_text("path,label,split\ngone.mp4,walk,train\n")
    with pytest.raises(FileNotFoundError, match="none of the 1"):
        folder.list_videos(tmp_path)


def test_folder_errors(tmp_path, clips):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        folder.list_videos(tmp_path / "nowhere")
    (tmp_path / "walk").mkdir()
    (tmp_path / "walk/readme.txt").write_text("not a video")
    with pytest.raises(FileNotFoundError, match="<class>/<video>"):
        folder.list_videos(tmp_path)
    with pytest.raises(ValueError, match=r"valid: \[1\]"):
        folder.list_videos(tmp_path, split=2)


def test_folder_videos_decode(tmp_path, clips):
    _fake_folder(tmp_path, clips, n=3)
    _assert_decodes(folder.list_videos(tmp_path))


@pytest.mark.parametrize("how", ["file", "folder"])
def test_symlink_out_of_the_root_is_refused_like_dotdot(tmp_path, clips, how):
    """A real symlink inside the dataset root pointing outside it is refused, whether the
    video file or its class folder is the link; a link that stays inside is fine."""
    from motionclr.datasets.sources import list_videos
    root, outside = tmp_path / "root", tmp_path / "elsewhere"
    _fake_folder(root, clips)
    _put(clips, outside / "secret.mp4")
    if how == "file":
        os.symlink(outside / "secret.mp4", root / "walk" / "secret.mp4")
    else:
        os.symlink(outside, root / "stolen")
    with pytest.raises(ValueError, match="symlink .* outside the dataset root.*inside"):
        list_videos("folder", root)
    (root / "walk" / "secret.mp4").unlink(missing_ok=True)
    (root / "stolen").unlink(missing_ok=True)
    first = sorted((root / "walk" / "s0").iterdir())[0]
    os.symlink(first, root / "walk" / f"again{first.suffix}")
    assert any(e.video_id == "walk/again" for e in list_videos("folder", root))
    # annotation tables too: a row naming a link that leads out
    table = root / "annotations.csv"
    os.symlink(outside / "secret.mp4", root / "link.mp4")
    table.write_text("path,label,split\nlink.mp4,walk,train\n")
    with pytest.raises(ValueError, match="outside the dataset root"):
        folder.list_videos(root)
