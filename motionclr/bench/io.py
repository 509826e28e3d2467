"""`motionclr bench io`: how fast can training clips come off the disk?

On the same videos and the same random clip workload (16 frames of RGB + flow at the
configured stride), this times:

* ``shards``: our HDF5 shard reader (``ShardClipDataset``, raw uint8, the project's
  default shard settings: ``FrameReader`` looks chunk offsets up once, ``preadv``s exactly
  the clip's frames, hints a whole batch's bytes to the kernel first, samples stay
  channel-last), in one process and through a ``DataLoader`` with workers, with a warm page
  cache and after dropping it (``echo 3 > /proc/sys/vm/drop_caches``, root only; cold
  numbers are skipped where that is not permitted);
* ``compact-zstd`` / ``compact-lz4``: JPEG-coded RGB + Blosc-compressed flow in HDF5
  (``motionclr.pipeline.compact``), the setting for datasets too big for raw shards;
* ``jpeg-folders``: one JPEG per frame and per flow component, as mmaction2 and CoCLR
  store them (``img_00001.jpg``, ``x_00001.jpg``, ``y_00001.jpg``), read with OpenCV;
* ``ffmpeg``: on-the-fly decoding of the source videos (RGB only: flow cannot be decoded),
  one ffmpeg process per clip, seeking to the clip;
* ``raw read``: sequential 8 MiB reads of the shard files, the disk's own speed.

It builds all of this itself under ``--workdir`` (cached by parameters): source videos cut
from the bundled sample clips (``motionclr/samples/``; or synthetic ones), decoded with
``decode_video``, flow by Farneback (the numbers do not depend on flow quality), shards
written with ``motionclr.storage.shards``. Results go into docs/benchmarks.md between
``<!-- bench:io:start -->`` and ``<!-- bench:io:end -->``.
The data is built in ``io_data``, the readers and timers are in ``io_readers``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import cv2
import h5py
import numpy as np

from motionclr.bench import write_section
from motionclr.bench.io_data import BuildParams, _sample_clips, build, disk_sizes
from motionclr.bench.io_readers import (CompactWorkload, CopyCeiling, Cv2Workload,
                                        FfmpegWorkload,
                                        JpegWorkload, PyAVWorkload, ShardFrames,
                                        ShardWorkload, check_frames, disjoint_items,
                                        drop_caches, have_pyav, hint_all_then_read,
                                        random_read, raw_read, time_loader, time_single,
                                        time_transforms, workload)
from motionclr.storage.warm import warm

START, END = "<!-- bench:io:start -->", "<!-- bench:io:end -->"


# ----------------------------------------------------------------------------- report

def machine() -> str:
    mem = "?"
    try:
        kb = int(next(line for line in open("/proc/meminfo") if line.startswith("MemTotal"))
                 .split()[1])
        mem = f"{kb / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} CPUs ({cpu}), {mem}, {platform.system()} {platform.release()}"


def _fmt(x, nd=0):
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–"
    if nd == 0:
        return f"{x:,.0f}"
    return f"{x:,.{nd}f}"


ROWS = {  # result key -> table label
    "shards": "**shards**, `ShardClipDataset` (raw uint8, phase-major, default)",
    "shards-time": "shards with frames in time order (`pipeline.time_phases=1`)",
    "compact-zstd": "compact-zstd (JPEG RGB, blosc-zstd flow)",
    "compact-lz4": "compact-lz4 (JPEG RGB, blosc-lz4hc flow)",
    "jpeg-q95": "JPEG folders q95 (mmaction2/CoCLR layout)",
    "jpeg-q90": "JPEG folders q90",
    "pyav": "on the fly, in process: PyAV (RGB only)",
    "cv2": "on the fly, in process: `cv2.VideoCapture` (RGB only)",
    "ffmpeg": "on the fly, one ffmpeg subprocess per clip (RGB only)",
    "copy": "copy ceiling: the shard reader's byte ranges, one `preadv` each, nothing else",
}


INPROC = {"pyav": "PyAV", "cv2": "OpenCV"}


def _median_ratio(res: dict, a: str, b: str, key: str = "1p_rounds"):
    """Median over the interleaved rounds of reader ``a``'s rate over ``b``'s."""
    ra, rb = res.get(a, {}).get(key), res.get(b, {}).get(key)
    if not ra or not rb:
        return None
    return float(np.median([x / y for x, y in zip(ra, rb) if y]))


def render(res: dict, sizes: dict, meta: dict, args, cmd: str) -> str:
    """The markdown section: setup, one table row per setting, the targets."""
    p = meta["params"]
    n_rgb = sum(v["n_frames"] for v in meta["videos"])
    v0 = meta["videos"][0]
    clip_mb = args.clip_len * v0["height"] * v0["width"] * 5 / 1e6
    source = ("the bundled sample clips, `motionclr/samples/` (random crop / flip / start / speed)"
              if p["source"] == "samples" else "synthetic motion videos")
    build_t = ", ".join(f"{k} {v:.0f} s" for k, v in meta["timing"].items())
    dl = f"DL{args.workers}"
    cold = ("right after `echo 3 > /proc/sys/vm/drop_caches`, best of "
            f"{args.repeats} runs" if res.get("cold_ok")
            else "NOT MEASURED (dropping the page cache was not permitted or --no-cold)")
    inproc = res.get("inproc")
    try:
        import av
        av_v = f", PyAV {av.__version__}"
    except ImportError:
        av_v = ", PyAV not installed (`pip install motionclr[bench]`)"
    frames = res.get("frames", {})
    lines = [
        "## I/O: clip reading (`motionclr bench io`)",
        "",
        f"- Machine: {machine()}; work dir on {_fs_type(Path(args.workdir))}; Python "
        f"{platform.python_version()}, h5py {h5py.__version__} (HDF5 "
        f"{h5py.version.hdf5_version}), OpenCV {cv2.__version__}{av_v}. "
        f"{args.load_note or 'The machine is shared with other jobs.'}",
        f"- Command: `{cmd}`",
        f"- Data: {p['videos']} videos x {p['frames']} frames ({n_rgb} frames) of {source}, "
        f"encoded at UCF101's size as 320x240 MPEG-4 .avi (GOP 12, q 5), decoded to "
        f"{v0['width']}x{v0['height']} (short side {p['short_side']}, area resize); "
        f"{p['flow']} flow as uint8 (bound {p['bound']:g}). Shards as the project writes "
        f"them: raw uint8, one chunk per frame, stored phase-major (`time_phases` "
        f"{p.get('time_phases', 1)}), {p['shard_mb']} MB shards. JPEG folders at quality "
        f"{' and '.join(str(q) for q in p['jpeg_folders'])}, compact RGB at "
        f"{p['jpeg_quality']}. Build {meta['build_s']:.0f} s ({build_t}).",
        f"- Workload: random {args.clip_len}-frame clips at stride {args.stride}, RGB + flow "
        f"({clip_mb:.2f} MB of uint8 per clip; the on-the-fly readers decode RGB only), the "
        f"same clips for every reader: those `ShardClipDataset` draws with `RandomClip` for "
        f"seed {args.seed}. Before timing, every reader's frames are checked against the "
        "shards' on 24 clips (last column: identical, or the largest mean |difference| in "
        "grey levels; a reader off by one frame, or further off than 8 levels, stops the "
        "bench).",
        f"- 1p: one process reading batches of 8. {dl}: `DataLoader(num_workers="
        f"{args.workers}, batch_size=8)`. Warm (page cache filled): {args.repeats} "
        f"interleaved rounds of every reader in turn, up to {args.seconds:g} s each; the "
        f"table gives the median round and every ratio is the median of the same round's "
        f"ratios. Cold: the first {res.get('cold_n', '–')} clips (distinct videos) {cold}; "
        f"{dl} cold runs include worker start-up.",
        "- On the fly, in process (PyAV, OpenCV): one decoding thread, the file opened per "
        "clip, a seek to the key frame at or before the clip, decoding forward with frames "
        "indexed by timestamp (frame-accurate), only the clip's frames converted, area "
        "resize to the shards' size (PyAV through the same libswscale path as the shards, "
        "so bit-identical; OpenCV with `INTER_AREA`). "
        + (f"The faster, **{INPROC[inproc]}**, is the on-the-fly baseline (×in-process)."
           if inproc else "No in-process decoder ran."),
        "- MB/s: uint8 clip bytes delivered per second. Disk B/frame: stored bytes (HDF5 "
        "chunk storage, JPEG file sizes, source .avi size / frames).",
        "",
        f"| setting | disk B/frame RGB | disk B/frame flow | 1p warm clips/s | 1p cold clips/s "
        f"| {dl} warm clips/s | {dl} cold clips/s | 1p warm MB/s | 1p cold MB/s "
        f"| ×in-process decode 1p warm | ×JPEG q95 / q90 1p warm | ×JPEG q95 / q90 {dl} warm "
        "| frames vs shards |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def ratio(x):
        return f"{x:.1f}" if x else "–"
    for key, label in ROWS.items():
        if key not in res:
            continue
        r = res[key]
        s = sizes.get(key, (None, None, None))
        fr = frames.get(key)
        lines.append("| " + " | ".join([
            label, _fmt(s[0]), _fmt(s[1]), _fmt(r.get("1p_warm")), _fmt(r.get("1p_cold")),
            _fmt(r.get("dl_warm")), _fmt(r.get("dl_cold")), _fmt(r.get("1p_warm_mbs")),
            _fmt(r.get("1p_cold_mbs")),
            ratio(_median_ratio(res, key, inproc)) if inproc else "–",
            " / ".join(ratio(_median_ratio(res, key, j)) for j in ("jpeg-q95", "jpeg-q90")),
            " / ".join(ratio(_median_ratio(res, key, j, "dl_rounds"))
                       for j in ("jpeg-q95", "jpeg-q90")),
            "(reference)" if key == "shards" else
            "identical" if fr == 0 else f"≤ {fr:.2f}" if fr is not None else "–"]) + " |")
    raw = res.get("raw", {})
    lines.append(f"| raw sequential read of the shard files (8 MiB blocks) | | | "
                 f"{_fmt(raw.get('warm_mbs'))} MB/s | {_fmt(raw.get('cold_mbs'))} MB/s "
                 "| | | | | | | | |")
    pr = res.get("paired", {})
    fpx = v0["width"] * v0["height"]

    def pct(x):
        return _fmt(100 * x if x else None)
    lines += [
        "",
        "Cold reads against the raw read: each of "
        f"{len(pr.get('pairs', []))} repeats runs six reads after dropping the page cache, "
        "each bracketed by raw reads of the shard files end to end and compared with their "
        "mean (the virtual disk's speed drifts between runs, its host caching what the guest "
        "read lately; this way every run follows a raw read and every raw read another run): "
        f"our reader over {pr.get('clips', '–')} clips whose frame spans do not overlap (up "
        "to 3 per video), through the page cache (`data.direct=off`, read-ahead hints for "
        "a batch's uncached clips, then buffered reads) and with `O_DIRECT` (`data.direct=on`,"
        " every clip of a batch read 4 at a time from threads into page-aligned buffers, "
        "then copied into place); the same clips with every read-ahead hint issued first (the access "
        "pattern's ceiling; no loader knows every future clip); the reader on the "
        "time-ordered shards; and the disk alone, random `O_DIRECT` reads of the reader's own "
        "request sizes (one per byte range the reader asks for, rounded up to 4 KiB), 1 and "
        "8 in flight. Each phase-major clip is one disk request per modality "
        f"({args.clip_len * fpx * 3 / 1e6:.2f} MB RGB, {args.clip_len * fpx * 2 / 1e6:.2f} MB "
        f"flow at stride {args.stride}); a time-ordered one needs one per frame "
        f"({args.clip_len} of {fpx * 3 / 1e3:.0f} KB and {args.clip_len} of "
        f"{fpx * 2 / 1e3:.0f} KB).",
        "",
        "| repeat | raw MB/s (around the reader) | reader, page cache | reader, `O_DIRECT` "
        "| page-cache ceiling | time-ordered | random reads, 1 in flight "
        "| random reads, 8 in flight |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for k, q in enumerate(pr.get("pairs", [])):
        lines.append(f"| {k + 1} | {q['reader_raw']:,.0f} | " + " | ".join(
            f"{q[n]:,.0f} ({100 * q[n] / q[n + '_raw']:.0f}%)" if n in q else "–"
            for n in ("reader", "direct", "ceiling", "time", "random_q1", "random_q8"))
            + " |")
    lines += [
        "",
        "MB/s of the bytes the disk delivers; in brackets, of the raw read around that run. "
        f"Medians: reader {pct(pr.get('ratio'))}% of the raw read (page cache) and "
        f"{pct(pr.get('direct_ratio'))}% (`O_DIRECT`), time-ordered shards "
        f"{pct(pr.get('time_ratio'))}%, random reads {pct(pr.get('random_q1_ratio'))}% "
        f"(1 in flight) and {pct(pr.get('random_q8_ratio'))}% (8 in flight); the reader "
        f"delivers {pct(pr.get('pattern_ratio'))}% of its pattern's page-cache ceiling; "
        f"against the random reads' rate (the faster of 1 and 8 in flight, same repeat) it "
        f"delivers {pct(pr.get('reader_vs_random'))}% through the page cache and "
        f"{pct(pr.get('direct_vs_random'))}% with `O_DIRECT`.",
        "",
        "Targets (default settings):",
        "",
    ]
    lines += [f"- {t}" for t in targets(res, sizes)]
    lines += augment_section(res, args)
    if "checksums" in res:
        lines += ["", checksum_paragraph(res["checksums"])]
    lines += [
        "",
        "Notes:",
        "",
        "- The read path: `FrameReader` (`motionclr/storage/frame_reader.py`) takes each "
        "video's chunk offsets from the manifest (a few runs per video), then `preadv`s "
        "exactly the clip's frames into the output, one call per range of frames adjacent "
        "in the file. The copy-ceiling row `preadv`s the same ranges with no per-clip work "
        "at all: the gap between the two is the reader's per-clip work (sampling, planning, "
        "read-ahead hints, Python). A read-only `mmap` of the shards copied ~10 % faster "
        "warm in scratch runs, but mapped pages survive `drop_caches` (cold runs came out "
        "warm) and page out less readily, so the reader stays with `preadv`. h5py's "
        "hyperslab path (read the 31-frame span "
        "of a stride-2 clip, gather 16) measured 3-4x slower here, and a worker-side "
        "transpose to (C,T,H,W) halved the rate again, so samples stay channel-last and "
        "`batch_to_device` permutes them on the device.",
        "- Phase-major shards (`pipeline.time_phases`, default 2; `motionclr/storage/"
        "shards.py`): every frame is its own HDF5 chunk, written even frames first, then odd "
        "ones, so the arrays stay in time order for any HDF5 reader while a stride-2 clip is "
        "one byte range per modality and a stride-1 clip two. Against the same shards in "
        "time order (the row above) it reads faster warm (fewer, larger `preadv`s) and cold "
        "(one disk request per clip and modality instead of 16).",
        "- Cold reads: `ShardClipDataset.advise` (`POSIX_FADV_WILLNEED`) is called for every "
        "clip of a batch before any is read (`__getitems__`, which `DataLoader` uses), so the "
        "disk has several requests in flight. On this virtual disk that does not matter much: "
        "random reads of the clips' request sizes run at about the same rate with 1 or 8 in "
        "flight (table above), i.e. it serves one request at a time, and at about half the "
        "rate of the sequential read, which its host reads ahead. A clip workload is random "
        "reads, so its cold ceiling here is that random-read rate (the cold target). Also "
        "tried, in "
        "scratch runs on the time-ordered layout, and slower: hinting each clip's whole span "
        "so stride-2 gaps are read too (`FrameReader(merge_gap=...)`; cold clip MB/s 512-585 "
        "against 781-954 with per-frame hints), reading a batch's clips from 4 threads (cold "
        "+5-9 %, warm -12 %).",
        "- `O_DIRECT` (`data.direct`; `FrameReader._direct`, `ShardClipDataset._read_direct`): "
        "a buffered read of an uncached clip makes the kernel allocate and fill 4 KiB "
        "page-cache folios and then copy out of them; with `O_DIRECT` the disk writes into a "
        "page-aligned per-thread buffer and one copy from it puts the frames in place. Here "
        "that is a small gain (82 % against 76 % of the random reads' rate in the table "
        "above; CPU time per cold clip 1.47 against 1.53 ms in a scratch run): this disk "
        "serves one request at a time, so the disk, not the page cache's CPU work, sets the "
        "pace. Every direct read is checked against its "
        "sums (its bytes just came from the disk). The pages are not cached, which is what "
        "a stage larger than memory wants, and a loss for one the cache could keep: `auto` "
        "turns it on above 10× the available memory (`motionclr/storage/warm.py` derives "
        "the threshold from these rates). A first version asked the page cache first "
        "(`RWF_NOWAIT`) and read only the misses directly; a `RWF_NOWAIT` read of uncached "
        "pages starts the kernel's read-ahead of them before it returns, so each clip was "
        "read twice (566 against 1,166 MB/s in a scratch A/B with the same order of runs); "
        "direct mode now reads every clip directly.",
        "- h5py strided slicing (`ds[a:b:2]`) on 8-frame chunks ran at about 10 clips/s in a "
        "separate micro-benchmark, 100× slower than reading the range; the shard reader "
        "avoids h5py's read path altogether.",
        "- On the fly: the subprocess row starts one ffmpeg per clip, and that start-up is "
        "most of its time; loaders decode in process. PyAV's per-frame `to_ndarray(width=, "
        "height=)` builds a new swscale context for every frame; a libavfilter graph (or one "
        "reused `VideoReformatter`) keeps one, which made PyAV about 1.5× faster in a "
        "scratch run here. decord and torchcodec were not installed; torchvision 0.29 has no "
        "video decoding left (`torchvision.io` lists no video reader).",
        "- The compact settings and the JPEG folders are bound by JPEG decoding (16 RGB "
        "frames per clip; the folders also decode 32 flow JPEGs). Compact flow is lossless, "
        "while the folders' flow JPEGs are lossy.",
    ]
    lines += ["", "Allocated on disk in total: " + ", ".join(
        f"{'source videos' if k == 'ffmpeg' else k} {s[2][1] / 2**20:.0f} MiB"
        for k, s in sizes.items() if k not in INPROC) + " (a JPEG folder wastes part of a "
        "4 KiB block per file).", ""]
    return "\n".join(lines)


def augment_section(res: dict, args) -> list[str]:
    """What a CPU training run costs per clip: reading plus the training transforms."""
    steps = res.get("aug_steps")
    rows = [k for k in ("shards", "jpeg-q95", "jpeg-q90") if res.get(k, {}).get("aug_1p")]
    if not rows:
        return []
    out = [
        "",
        "### What a CPU run costs: reading plus the training transforms",
        "",
        f"The same clips, {args.clip_len}x{args.crop}² views: one process on one CPU thread "
        "(`torch.set_num_threads(1)`) reads a batch of 8, collates it, calls "
        "`batch_to_device` (CPU) and `method.views` (MoDist's: RGB + flow, random resized "
        f"crop to {args.crop}, flip shared by a pair, colour jitter, grayscale, blur, "
        f"normalise); the run with the least CPU time per clip of {args.repeats}, up to "
        f"{args.aug_seconds:g} s each. CPU ms: this process's CPU time (`time.process_time`), "
        "which other jobs on a shared machine do not inflate as they do wall time; the "
        "end-to-end ratios compare CPU time per clip.",
        "",
        "| setting | read only, 1p warm clips/s | read + transforms clips/s (wall) "
        "| CPU ms per clip | end to end ×JPEG q95 / q90 |",
        "|---|---|---|---|---|",
    ]
    for k in rows:
        a, ms = res[k]["aug_1p"], res[k]["aug_cpu_ms"]

        def x(j):
            b = res.get(j, {}).get("aug_cpu_ms")
            return f"{b / ms:.2f}" if b else "–"
        out.append(f"| {ROWS[k]} | {_fmt(res[k].get('1p_warm'))} | {a:,.1f} | "
                   f"{ms:,.1f} | {x('jpeg-q95')} / {x('jpeg-q90')} |")
    out += ["", "The transforms cut uint8 clips to each crop box's window before converting "
            "to float (`apply_boxes`), flip the fresh crops in place, and skip the samples a "
            "random op leaves alone (colour jitter, grayscale, flip); the hue rotation runs "
            "one clip at a time so its temporaries stay in cache. "
            "`tests/test_transforms.py` checks every output against the old whole-frame path "
            "on fixed seeds (equal up to float rounding)."]
    if steps:
        total = sum(v for n, v in steps.items() if not n.startswith(" "))
        out += ["", "Where a shard clip's time goes (CPU ms per clip, same run; indented: the "
                "augmentation's own steps inside `method.views`):", "",
                "| step | CPU ms per clip | share |", "|---|---|---|"]
        for n, v in steps.items():
            label = f"&nbsp;&nbsp;`{n.strip()}`" if n.startswith(" ") else f"`{n}`"
            out.append(f"| {label} | {v:.2f} | {100 * v / total:.0f}% |")
    return out


def checksum_cost(work: Path, items, args) -> dict:
    """Warm single-process clips/s of the shard reader with and without its checks, in two
    states. ``on`` vs ``off``: the workload's clips, frames already checked by this
    process (every read after a frame's first, ``FrameReader``'s check_once). ``first`` vs
    ``off_first``: clips whose frames do not overlap (``disjoint_items``), read by a fresh
    dataset each run (both), so every frame is new to it and, checked, summed. Runs are
    interleaved (best of each) so the shared machine's drift hits all four. Also the cost
    per clip of the sum itself against zlib.crc32."""
    import time
    import zlib

    from motionclr.storage.checksums import frame_sums

    def workload(check, its):
        w = ShardWorkload(work / "shards", its, args.clip_len, args.stride, args.seed,
                          check=check)
        for v in {v["shard"] for v in w.ds.videos}:
            w.ds._shard(v)  # files opened outside the clock, as in a running worker
        return w

    fresh = disjoint_items(items, 10_000)
    on, off = workload(True, items), workload(False, items)
    warm(sorted((work / "shards").glob("shard-*.h5")), 1.0)
    time_single(on, len(items), 4 * args.seconds)  # every frame checked once, untimed
    rates: dict = {"first": [], "off_first": [], "on": [], "off": []}
    summed: dict = {"first": [], "on": []}
    for _ in range(max(3, args.repeats)):
        for name in rates:
            # fresh datasets for both first-read runs: both pay the per-video table set-up
            ds = {"on": on, "off": off}.get(name) or workload(name == "first", fresh)
            before = _frames_summed(ds)
            k, el, _ = time_single(ds, len(ds), args.seconds)
            rates[name].append(k / el)
            if name in summed:
                summed[name].append((_frames_summed(ds) - before) / max(k, 1))
    clips = [off[j] for j in range(min(200, len(items)))]
    per_clip = {}
    for name, fn in (("sum64", lambda a: frame_sums(a)),
                     ("crc32", lambda a: [zlib.crc32(f) for f in a])):
        t0 = time.perf_counter()
        for c in clips:
            for a in c.values():
                fn(a.reshape((-1,) + a.shape[-3:]))
        per_clip[name] = (time.perf_counter() - t0) / len(clips) * 1e6
    best = {k: max(v) for k, v in rates.items()}
    return {**best, "cost": 1 - best["on"] / best["off"],
            "cost_first": 1 - best["first"] / best["off_first"], "first_clips": len(fresh),
            "summed_per_clip": {k: float(np.mean(v)) for k, v in summed.items()},
            "us_per_clip": per_clip, "runs": rates}


def _frames_summed(w) -> int:
    return sum(r.frames_summed for _, r in w.ds._files.values())


def checksum_paragraph(c: dict) -> str:
    us = c["us_per_clip"]
    n = c["summed_per_clip"]
    return ("Checksums on read (`motionclr/storage/checksums.py`, `FrameReader`): every "
            "frame is summed and compared with the sum recorded at packing the first time a "
            "process reads it, and again after any change to its shard file (its inode, "
            "size, mtime or ctime). Warm, one process, runs interleaved (best of "
            f"{len(c['runs']['on'])} each). The workload's clips: {c['off']:,.0f} clips/s "
            f"unchecked, {c['on']:,.0f} clips/s reading frames this process has checked before "
            f"({n['on']:.1f} frames summed per clip), a cost of {100 * c['cost']:.1f} % "
            f"(target <= 10 %). Every frame new to the process ({c['first_clips']} clips "
            "whose frames do not overlap, a fresh dataset per run for both, "
            f"{n['first']:.0f} frames summed per clip): {c['first']:,.0f} clips/s checked "
            f"against {c['off_first']:,.0f} unchecked, a cost of "
            f"{100 * c['cost_first']:.1f} %: what a worker pays in the first epochs. The sum "
            f"itself takes {us['sum64']:.0f} µs per clip; zlib.crc32 of the same frames "
            f"{us['crc32']:.0f} µs, which is why the check is a 64-bit word sum.")


def targets(res: dict, sizes: dict) -> list[str]:
    """The issue's targets, each with the measured value and PASS / MISS."""
    def line(name, value, goal, fmt="{:.1f}×"):
        if value is None:
            return f"{name}: not measured"
        ok = "PASS" if value >= goal else "MISS"
        return f"{name}: {fmt.format(value)} (target ≥ {fmt.format(goal)}) {ok}"

    inproc = res.get("inproc")
    out = [line(f"shards (RGB + flow) vs in-process decode ({inproc}, RGB only), 1p warm",
                _median_ratio(res, "shards", inproc) if inproc else None, 30)]
    cp = _median_ratio(res, "shards", "copy")
    if cp and inproc:
        out.append(f"for scale: the shard reader runs at {cp:.0%} of the copy ceiling (the "
                   "same byte ranges read with no per-clip work), and that ceiling is "
                   f"{_median_ratio(res, 'copy', inproc):.0f}× the in-process decode: what "
                   "any reader that copies each clip out of the page cache could reach here")
    for j in ("jpeg-q95", "jpeg-q90"):
        out.append(line(f"shards vs JPEG folders {j[5:]}, 1p warm",
                        _median_ratio(res, "shards", j), 8))
    for j in ("jpeg-q95", "jpeg-q90"):
        out.append(line(f"shards vs JPEG folders {j[5:]}, both through DataLoader(2 workers)",
                        _median_ratio(res, "shards", j, "dl_rounds"), 1.5))
    pr = res.get("paired", {})
    out.append(line("shards cold read rate, `data.direct=on` (what `auto` picks for a stage "
                    "over 10× the available memory, where most clips come from the disk), "
                    "vs the disk's own random reads of the same request sizes (the faster of "
                    "1 and 8 in flight; median of repeats)",
                    pr.get("direct_vs_random"), 0.8, "{:.0%}"))
    if pr.get("reader_vs_random"):
        out.append(f"for reference, the same through the page cache (`data.direct=off`; "
                   f"`auto` for smaller stages, whose pages the cache keeps for later "
                   f"reads): {pr['reader_vs_random']:.0%} (no target)")
    ff = _median_ratio(res, "shards", "ffmpeg")
    if ff:
        out.append(f"for reference, shards vs one ffmpeg subprocess per clip, 1p warm: "
                   f"{ff:.0f}× (no target: process start-up is most of that baseline)")
    if "compact-zstd" in sizes and "jpeg-q95" in sizes:
        j = sizes["jpeg-q95"]
        for c in ("compact-zstd", "compact-lz4"):
            s = sizes[c]
            r = (s[0] + s[1]) / (j[0] + j[1])
            out.append(f"{c} disk per frame (RGB + flow) vs JPEG folders q95: {r:.2f}× "
                       f"(target ≤ 1.5×) {'PASS' if r <= 1.5 else 'MISS'}")
    if "checksums" in res:
        cost = res["checksums"]["cost"]
        out.append(f"cost of the checksums on read, 1p warm, frames checked before in the "
                   f"process: {cost:.1%} (target ≤ 10%) {'PASS' if cost <= 0.10 else 'MISS'}")
        out.append(f"for reference, the same when every frame is new to the process "
                   f"(its first read): {res['checksums']['cost_first']:.1%} (no target)")
    return out


def _fs_type(path: Path) -> str:
    try:
        best = ("", "?")
        real = str(path.resolve())
        for line in open("/proc/mounts"):
            dev, mnt, fs = line.split()[:3]
            if real.startswith(mnt) and len(mnt) > len(best[0]):
                best = (mnt, f"{fs} ({dev})")
        return best[1]
    except OSError:
        return "?"




# ----------------------------------------------------------------------------- main

def parse(argv):
    ap = argparse.ArgumentParser(prog="motionclr bench io", description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default="cache/bench-io", help="data built here (cached)")
    ap.add_argument("--out", default="docs/benchmarks.md", help="markdown file to update")
    ap.add_argument("--videos", type=int, default=60)
    ap.add_argument("--frames", type=int, default=150, help="frames per source video")
    ap.add_argument("--short-side", type=int, default=128)
    ap.add_argument("--source", choices=["samples", "synthetic"], default="samples")
    ap.add_argument("--clip-len", type=int, default=16)
    ap.add_argument("--stride", type=int, default=2, help="the project's ClipCfg default")
    ap.add_argument("--clips", type=int, default=20000, help="workload length (max per run)")
    ap.add_argument("--seconds", type=float, default=3.0, help="time budget per warm run")
    ap.add_argument("--repeats", type=int, default=5,
                    help="warm runs: interleaved rounds, the median kept; cold runs: the best "
                         "of this many (shared machines are noisy)")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers (0: skip DL)")
    ap.add_argument("--no-cold", action="store_true", help="skip page-cache-dropped runs")
    ap.add_argument("--cold-pairs", type=int, default=7,
                    help="repeats of the paired cold comparison with the raw read")
    ap.add_argument("--crop", type=int, default=112, help="augmentation crop (clip.crop)")
    ap.add_argument("--aug-seconds", type=float, default=5.0,
                    help="time budget per with-transforms run (0: skip)")
    ap.add_argument("--load-note", default="",
                    help="a sentence on what else ran on the machine, for the report")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--render-only", action="store_true",
                    help="rewrite the docs section from the last run's results.json")
    ap.add_argument("--checksum-cost", action="store_true",
                    help="only measure the read checks' cost (printed, docs not written)")
    return ap.parse_args(argv)


def _augment_method(args):
    """The training augmentation as a method applies it: MoDist (RGB + flow views), crop
    ``--crop``, flips shared by a pair as the UCF101/HMDB51/Kinetics configs set them."""
    from motionclr.config import Config
    from motionclr.train.methods import build_method
    cfg = Config()
    cfg.method.name, cfg.model.backbone = "modist", "small3d"  # views do not use the net
    cfg.clip.crop, cfg.data.flip = args.crop, "shared"
    return build_method(cfg)


def render_only(work: Path, out: Path) -> int:
    """The docs section again from ``work/results.json``, measuring nothing: for a change
    of the section's text. The run's own command and arguments are kept."""
    saved = json.loads((work / "results.json").read_text())
    if "args" not in saved:
        raise SystemExit(f"{work / 'results.json'} predates --render-only: run the bench")
    meta = json.loads((work / "build.json").read_text())
    sizes = {k: (v[0], v[1], tuple(v[2])) for k, v in saved["sizes"].items()}
    body = render(saved["results"], sizes, meta, argparse.Namespace(**saved["args"]),
                  saved["cmd"])
    write_section(out, body, "io")
    print(body)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse(argv if argv is not None else sys.argv[1:])
    cmd = "motionclr bench io " + " ".join(argv or [])
    work = Path(args.workdir)
    if args.render_only:
        return render_only(work, Path(args.out))
    params = BuildParams(videos=args.videos, frames=args.frames, short_side=args.short_side,
                         source=args.source if args.source != "samples" or _sample_clips()
                         else "synthetic", seed=args.seed)
    print(f"building data in {work} ...", flush=True)
    meta = build(work, params, log=lambda *a, **k: print(*a, **k, flush=True))
    videos = meta["videos"]
    sizes = disk_sizes(work, meta)
    items = workload(videos, args.clips, args.clip_len, args.stride, args.seed)
    if args.checksum_cost:
        print(checksum_paragraph(checksum_cost(work, items, args)))
        return 0
    shard_files = sorted((work / "shards").glob("shard-*.h5"))
    jpeg = {f"jpeg-q{q}": work / f"jpeg-q{q}" for q in meta["params"]["jpeg_folders"]}
    readers = {
        "shards": ShardWorkload(work / "shards", items, args.clip_len, args.stride, args.seed),
        "shards-time": ShardWorkload(work / "shards-time", items, args.clip_len, args.stride,
                                     args.seed),
        "compact-zstd": CompactWorkload(work / "compact-zstd.h5", videos, items),
        "compact-lz4": CompactWorkload(work / "compact-lz4.h5", videos, items),
        **{k: JpegWorkload(d, videos, items) for k, d in jpeg.items()},
        **({"pyav": PyAVWorkload(work, videos, items)} if have_pyav() else {}),
        "cv2": Cv2Workload(work, videos, items),
        "ffmpeg": FfmpegWorkload(work, videos, items),
    }
    ceiling = {"copy": CopyCeiling(readers["shards"])}  # timed with the readers, not checked
    # Every reader must hand out the workload's frames: the shard reader exactly what the
    # shards hold, the others the shards' frames (bit-exact where they decode the same way,
    # else within a few grey levels and closer to them than to the next frames).
    s0 = readers["shards"][0]
    _, i0, idx0 = items[0]
    with h5py.File(work / "shards" / videos[i0]["shard"], "r") as f:
        want = f["videos"][videos[i0]["video_id"]]["rgb"][int(idx0[0]):int(idx0[-1]) + 1]
    assert np.array_equal(s0["rgb"][0], want[idx0 - idx0[0]])
    nxt = ShardFrames(work / "shards", videos, items, shift=1)
    probe = range(0, len(items), max(1, len(items) // 24))[:24]
    exact = {"shards-time", "pyav", "ffmpeg"}
    frames = {k: check_frames(k, ds, readers["shards"], nxt, probe, exact=k in exact)
              for k, ds in readers.items() if k != "shards"}
    print("  frames vs the shards (max mean |diff|): " + ", ".join(
        f"{k} {v:.2f}" for k, v in frames.items()), flush=True)

    res: dict = {"cold_n": min(len(videos), len(items)), "frames": frames}
    files = {"shards": shard_files,
             "shards-time": sorted((work / "shards-time").glob("shard-*.h5")),
             "compact-zstd": [work / "compact-zstd.h5"],
             "compact-lz4": [work / "compact-lz4.h5"],
             **{k: sorted(d.rglob("*.jpg")) for k, d in jpeg.items()},
             **{k: [work / v["source"] for v in videos] for k in ("pyav", "cv2", "ffmpeg")}}
    best = min(raw_read(shard_files)[0] for _ in range(3))  # the first pass also warms
    total = sum(p.stat().st_size for p in shard_files)
    res["raw"] = {"warm_mbs": total / best / 1e6}
    res["cold_ok"] = (not args.no_cold) and drop_caches()
    if res["cold_ok"]:
        # Over disjoint clips (up to 3 per video, so a run lasts about as long as the raw
        # read). Every clip run is bracketed by raw reads (raw, reader, raw, ceiling, raw,
        # time-ordered, raw, ...) and compared with their mean, the page cache dropped
        # before each run: the disk's speed drifts (its host caches what the guest read
        # lately, which dropping the guest's cache does not undo), and this way every clip
        # run follows a raw read and every raw read a clip run.
        cold_items = disjoint_items(items, 3)
        cold_ds, time_ds, direct_ds = (
            ShardWorkload(work / d, cold_items, args.clip_len, args.stride, args.seed)
            for d in ("shards", "shards-time", "shards"))
        direct_ds.ds.direct = True  # data.direct=on: O_DIRECT, 4 clips in flight
        sizes_req = cold_ds.requests(range(len(cold_items)))  # the same every repeat
        disk = sum(sizes_req)

        def cold_mbs(fn):  # MB/s of the bytes the disk delivers (fn: -> seconds, bytes)
            drop_caches()
            el, nb = fn()
            return nb / el / 1e6

        def clips(ds):  # a reader run over the cold clips: (seconds, disk bytes)
            return time_single(ds, len(cold_items), float("inf"))[1], disk
        runs = {"reader": lambda: clips(cold_ds), "direct": lambda: clips(direct_ds),
                "ceiling": lambda: hint_all_then_read(cold_ds, len(cold_items)),
                "time": lambda: clips(time_ds),
                # the disk itself: random 1 MiB reads, as many bytes, 1 and 8 in flight
                "random_q1": lambda: random_read(shard_files, sizes_req, depth=1),
                "random_q8": lambda: random_read(shard_files, sizes_req, depth=8)}
        raw = lambda: raw_read(shard_files)  # noqa: E731
        before = cold_mbs(raw)
        pairs = []
        for _ in range(max(1, args.cold_pairs)):
            rep = {}
            for name, fn in runs.items():
                rep[name] = cold_mbs(fn)
                after = cold_mbs(raw)
                rep[name + "_raw"] = (before + after) / 2
                before = after
            rep["random"] = max(rep["random_q1"], rep["random_q8"])  # the disk's best
            pairs.append(rep)
        res["raw"]["cold_mbs"] = max(p["reader_raw"] for p in pairs)
        res["paired"] = {"clips": len(cold_items), "pairs": pairs, **{
            k: float(np.median([p[a] / p[b] for p in pairs])) for k, a, b in (
                ("ratio", "reader", "reader_raw"), ("time_ratio", "time", "time_raw"),
                ("pattern_ratio", "reader", "ceiling"),
                ("direct_ratio", "direct", "direct_raw"),
                ("direct_vs_random", "direct", "random"),
                ("random_q1_ratio", "random_q1", "random_q1_raw"),
                ("random_q8_ratio", "random_q8", "random_q8_raw"),
                ("reader_vs_random", "reader", "random"))}}
    def best(fn):  # best of --repeats: (clips/s, MB/s, clips) of the fastest run
        runs = []
        for _ in range(max(1, args.repeats)):
            k, el, nb = fn()
            runs.append((k / el if el else 0.0, nb / el / 1e6 if el else 0.0, k))
        return max(runs)

    def cold(fn):
        def run():
            drop_caches()
            return fn()
        return run

    for name, ds in readers.items():
        r = res.setdefault(name, {})
        if res["cold_ok"]:
            r["1p_cold"], r["1p_cold_mbs"], k = best(cold(
                lambda: time_single(ds, res["cold_n"], float("inf"))))
            if args.workers > 0 and name != "ffmpeg":
                r["dl_cold"] = best(cold(lambda: time_loader(
                    ds, res["cold_n"], float("inf"), args.workers, with_startup=True)))[0]
    # Warm runs in interleaved rounds (every reader once per round, in turn), so that the
    # shared machine's load drifts across all of them alike: the table gives the median
    # round, the ratios the median of the same round's ratios.
    for name in readers:
        # Every setting's files cached the way `pretrain` caches a stage (data.warm,
        # storage/warm.py): dropped, then read once sequentially, so all readers copy
        # from the same kind of page cache (large folios; see that module).
        warm(files[name], 1.0)
    for _ in range(max(1, args.repeats)):
        for name, ds in {**readers, **ceiling}.items():
            r = res.setdefault(name, {})
            k, el, nb = time_single(ds, len(items), args.seconds)
            r.setdefault("1p_rounds", []).append(k / el)
            r.setdefault("1p_mbs_rounds", []).append(nb / el / 1e6)
            if args.workers > 0 and name not in ("ffmpeg", "copy"):
                k, el, nb = time_loader(ds, len(items), args.seconds, args.workers)
                r.setdefault("dl_rounds", []).append(k / el if el else 0.0)
    for name in {**readers, **ceiling}:
        r = res[name]
        r["1p_warm"] = float(np.median(r["1p_rounds"]))
        r["1p_warm_mbs"] = float(np.median(r["1p_mbs_rounds"]))
        if "dl_rounds" in r:
            r["dl_warm"] = float(np.median(r["dl_rounds"]))
        print(f"  {name}: " + ", ".join(f"{k} {v:.1f}" for k, v in r.items()
                                        if isinstance(v, float)), flush=True)
    inproc = [k for k in ("pyav", "cv2") if res.get(k, {}).get("1p_warm")]
    res["inproc"] = max(inproc, key=lambda k: res[k]["1p_warm"]) if inproc else None
    # What a CPU run costs: reading + collate + batch_to_device + method.views, one thread.
    if args.aug_seconds > 0:
        method = _augment_method(args)
        for name in ("shards", *jpeg):
            warm(files[name], 1.0)
            runs = [time_transforms(readers[name], len(items), args.aug_seconds, method,
                                    seed=args.seed, breakdown=name == "shards")
                    for _ in range(max(1, args.repeats))]
            k, el, el_cpu, steps = max(runs, key=lambda r: r[0] / r[2])
            res[name]["aug_1p"], res[name]["aug_cpu_ms"] = k / el, 1e3 * el_cpu / k
            if name == "shards":
                res["aug_steps"] = {s: 1e3 * v / k for s, v in steps.items()}
            print(f"  {name} + transforms: {k / el:.1f} clips/s, "
                  f"{1e3 * el_cpu / k:.1f} CPU ms per clip", flush=True)
    res["checksums"] = checksum_cost(work, items, args)
    body = render(res, sizes, meta, args, cmd.strip())
    write_section(Path(args.out), body, "io")
    (work / "results.json").write_text(json.dumps({"results": res, "sizes": {
        k: list(v[:2]) + [list(v[2])] for k, v in sizes.items()}, "cmd": cmd.strip(),
        "args": {k: v for k, v in vars(args).items() if k != "render_only"}},
        indent=1, default=str))
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
