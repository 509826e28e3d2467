"""`motionclr bench io`: the frame reader, the report section, a tiny end-to-end run."""
import json

import h5py
import numpy as np
import pytest

from motionclr.bench import io as bio
from motionclr.bench import write_section
from motionclr.storage.frame_reader import FrameReader


def test_frame_reader_matches_h5py(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (21, 5, 6, 3), dtype=np.uint8)
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("c8", data=a, chunks=(8, 5, 6, 3))
        f.create_dataset("contig", data=a)
        f.create_dataset("lzf", data=a, chunks=(8, 5, 6, 3), compression="lzf")
        f.create_dataset("split", data=a, chunks=(8, 5, 3, 3))  # chunks cut frames
    reader = FrameReader(path)
    with h5py.File(path, "r") as f:
        for name in ("c8", "contig", "lzf", "split"):
            for idx in (np.arange(0, 21, 2), np.arange(5, 21), np.array([20, 3, 3, 7])):
                reader.advise(name, idx, lambda: f[name])
                got = reader.read(name, idx, lambda: f[name])
                assert np.array_equal(got, a[idx]), (name, idx)
        assert reader._tables["c8"] is not None and reader._tables["lzf"] is None
        clips = np.zeros((2, 4, 5, 6, 3), np.uint8)  # (V, T, H, W, C): read in place
        for v, name in enumerate(("c8", "lzf")):
            reader.read(name, np.array([1, 3, 5, 7]), lambda: f[name], out=clips[v])
        assert np.array_equal(clips[0], a[1:8:2]) and np.array_equal(clips[1], a[1:8:2])


def test_write_section_replaces_only_between_markers(tmp_path):
    out = tmp_path / "benchmarks.md"
    write_section(out, "first", "io")
    assert out.read_text().startswith("# Benchmarks") and "first" in out.read_text()
    out.write_text(out.read_text() + "\n## other\nkeep me\n")
    write_section(out, "second", "io")
    text = out.read_text()
    assert "second" in text and "first" not in text and "keep me" in text
    assert text.count(bio.START) == 1 and text.count(bio.END) == 1


def results_inproc(tmp_path):
    return json.loads((tmp_path / "work" / "results.json").read_text())["results"]["inproc"]


def test_tiny_end_to_end(tmp_path):
    out = tmp_path / "benchmarks.md"
    rc = bio.main(["--videos", "2", "--frames", "20", "--source", "synthetic", "--clips", "24",
                   "--seconds", "0.1", "--workers", "0", "--no-cold", "--repeats", "2",
                   "--aug-seconds", "0.1", "--crop", "32",
                   "--workdir", str(tmp_path / "work"), "--out", str(out)])
    assert rc == 0
    text = out.read_text()
    assert bio.START in text and bio.END in text
    for row in ("ShardClipDataset", "time order", "compact-zstd", "JPEG folders q95",
                "JPEG folders q90", "cv2.VideoCapture", "ffmpeg subprocess", "raw read",
                "read + transforms", "`color_jitter`", "`batch_to_device`"):
        assert row in text, row
    if bio.have_pyav():  # the on-the-fly baseline: bit-identical to the shards
        assert "in process: PyAV (RGB only)" in text
        assert "on-the-fly baseline" in text and results_inproc(tmp_path) in ("pyav", "cv2")
    results = json.loads((tmp_path / "work" / "results.json").read_text())["results"]
    assert results["frames"]["ffmpeg"] == 0 and results["frames"]["shards-time"] == 0
    assert 0 < results["frames"]["jpeg-q90"] < 8 and results["inproc"] in ("pyav", "cv2")
    assert (tmp_path / "work" / "results.json").is_file()
    # the pattern ceiling reads the same samples as the reader, all hints first
    videos = json.loads((tmp_path / "work" / "build.json").read_text())["videos"]
    items = bio.workload(videos, 6, 16, 2, 0)
    ds = bio.ShardWorkload(tmp_path / "work" / "shards", items, 16, 2, 0)
    seconds, nbytes = bio.hint_all_then_read(ds, 6)
    assert seconds > 0 and nbytes == sum(v.nbytes for j in range(6) for v in ds[j].values())
    # --render-only rewrites the section from results.json, with the run's own command
    out.write_text("before\n" + bio.START + "\nstale\n" + bio.END + "\nafter\n")
    assert bio.main(["--render-only", "--workdir", str(tmp_path / "work"),
                     "--out", str(out)]) == 0
    again = out.read_text()
    assert again.startswith("before\n") and again.endswith("after\n") and "stale" not in again
    assert again[again.index(bio.START):] == text[text.index(bio.START):] + "after\n"
    assert "--render-only" not in again and "--no-cold" in again
    # the build is cached: a second call reuses it
    meta = (tmp_path / "work" / "build.json").stat().st_mtime
    bio.build(tmp_path / "work", bio.BuildParams(videos=2, frames=20, source="synthetic"))
    assert (tmp_path / "work" / "build.json").stat().st_mtime == meta


def test_frame_reader_spans_bridge_small_gaps(tmp_path):
    a = np.zeros((40, 4, 4, 3), np.uint8)  # 48 B frames
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("c8", data=a, chunks=(8, 4, 4, 3))
        f.create_dataset("lzf", data=a, chunks=(8, 4, 4, 3), compression="lzf")
    with h5py.File(path, "r") as f:
        fb = 48
        offs = [f["c8"].id.get_chunk_info_by_coord((k * 8, 0, 0, 0)).byte_offset
                for k in range(5)]
        at = lambda t: offs[t // 8] + (t % 8) * fb
        bridged = FrameReader(path, merge_gap=fb)
        # stride 2 inside one chunk: one range from the first to the last frame's end
        assert bridged.spans("c8", np.arange(0, 8, 2), lambda: f["c8"]) == [(at(0), 7 * fb)]
        apart = FrameReader(path, merge_gap=0)
        assert apart.spans("c8", np.arange(0, 8, 2), lambda: f["c8"]) == [
            (at(t), fb) for t in range(0, 8, 2)]
        assert apart.spans("c8", np.arange(2, 6), lambda: f["c8"]) == [(at(2), 4 * fb)]
        assert bridged.spans("lzf", np.arange(4), lambda: f["lzf"]) == []
        # every requested frame lies inside some range
        idx = np.array([1, 3, 17, 19, 33])
        ranges = bridged.spans("c8", idx, lambda: f["c8"])
        for t in idx:
            assert any(o <= at(t) and at(t) + fb <= o + n for o, n in ranges)


def test_disjoint_items_never_overlap_within_a_video():
    from motionclr.bench.io_readers import disjoint_items, workload
    videos = [{"n_frames": 150}, {"n_frames": 40}]
    items = workload(videos, 200, 16, 2, seed=0)
    out = disjoint_items(items, per_video=3)
    assert out == [it for it in items if it in out]      # the workload's order is kept
    for v, most in ((0, 3), (1, 1)):                   # 40 frames hold one 31-frame span
        spans = sorted((int(ix[0]), int(ix[-1])) for _, i, ix in out if i == v)
        assert len(spans) == most
        assert all(b[0] > a[1] + 1 for a, b in zip(spans, spans[1:]))


def test_chunk_offset_runs_round_trip():
    enc, dec = FrameReader.encode_offsets, FrameReader.decode_offsets
    cb = 100
    # phase-major: chunks 0, 2, 4 then 1, 3 back to back from byte 1000
    offs = np.array([1000, 1300, 1100, 1400, 1200])
    assert enc(offs, cb) == [[0, 2, 1000, 3], [1, 2, 1300, 2]]
    # time order with a gap after chunk 1; a lone chunk; reversed order
    for offs in (np.array([0, 100, 5000, 5100, 5200]), np.array([7]),
                 np.array([400, 300, 200, 100]), np.array([50, 900, 150, 20000])):
        assert np.array_equal(dec(enc(offs, cb), cb), offs), offs
    assert np.array_equal(dec([3, 5, 9], cb), [3, 5, 9])  # plain lists from old manifests


def test_frame_reader_scatters_file_order_runs(tmp_path):
    """Chunks written out of time order (as shards are) are read in runs of file order and
    land in the clip's order, duplicates included."""
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (9, 3, 4, 2), dtype=np.uint8)
    path = tmp_path / "x.h5"
    with h5py.File(path, "w", libver=("v110", "v110"), meta_block_size=1 << 20) as f:
        ds = f.create_dataset("p", shape=a.shape, dtype=a.dtype, chunks=(1, 3, 4, 2))
        for t in [0, 2, 4, 6, 8, 1, 3, 5, 7]:
            ds.id.write_direct_chunk((t, 0, 0, 0), a[t].tobytes())
    reader = FrameReader(path)
    with h5py.File(path, "r") as f:
        get = lambda: f["p"]  # noqa: E731
        for idx in (np.arange(9), np.arange(1, 9, 2), np.array([8, 1, 1, 4, 0])):
            assert np.array_equal(reader.read("p", idx, get), a[idx])
        pos = reader._plan("p", np.arange(4), get)[1]
        runs = FrameReader._runs(pos, a[0].nbytes)
        assert [r.tolist() for r in runs] == [[0, 2], [1, 3]]  # evens, then odds


def test_frame_reader_reads_runs_and_refuses_short_files(tmp_path):
    """Consecutive, scattered and repeated frames come back right, and a table pointing past
    the end of the file is a clear error."""
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (12, 3, 5, 2), dtype=np.uint8)
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("c1", data=a, chunks=(1, 3, 5, 2))
    reader = FrameReader(path)
    with h5py.File(path, "r") as f:
        for i in (np.arange(0, 12, 2), np.array([5, 1, 1, 9]), np.arange(3, 7), np.array([4])):
            assert np.array_equal(reader.read("c1", i, lambda: f["c1"]), a[i])
    size = path.stat().st_size
    bad = FrameReader(path, {"k": (1, [size - 10], (3, 5, 2), "uint8")})
    with pytest.raises(OSError, match="short read"):
        bad.read("k", np.array([0]), lambda: None)
