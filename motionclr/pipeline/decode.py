"""Decode a video to uint8 RGB frames with ffmpeg (through ffmpeg-python).

The ffmpeg binary comes from PATH, else from imageio-ffmpeg's bundled build. Frames are piped
out as raw rgb24, resized so the short side is ``short_side`` (even sizes), optionally
resampled to ``fps``. What is recorded is the number of frames actually decoded, never the
container's claim. stderr is drained on a thread (a full pipe would deadlock ffmpeg) and a
timer kills ffmpeg after ``timeout`` seconds.

Damaged input (a file cut short, flipped bits) is never concealed into the output: damaged
packets are dropped, frames from the first gap on are cut, and ffmpeg's error lines come
back with the frames (``info["decode_errors"]``).
"""
from __future__ import annotations

import functools
import re
import shutil
import subprocess
import threading
from pathlib import Path

import ffmpeg
import numpy as np

from motionclr.tools import ffmpeg_exe  # one lookup for the package; re-exported



class DecodeError(RuntimeError):
    """A video that cannot be used; the message is the reason recorded in the manifest."""


@functools.lru_cache(maxsize=1)
def ffmpeg_version() -> str:
    out = subprocess.run([ffmpeg_exe(), "-version"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else "unknown"


_STREAM = re.compile(r"Stream #\d+:\d+.*?: Video: .*?(?<![0-9x])(\d{2,5})x(\d{2,5})[\s,\]]")
_FPS = re.compile(r"([\d.]+) (?:fps|tbr)")
_ROT = re.compile(r"rotate\s*:\s*(-?\d+)|rotation of (-?[\d.]+) degrees")


def probe(path: str | Path, timeout: float = 60.0) -> dict:
    """Width, height and nominal fps of the first video stream, read from ffmpeg's banner.

    Only the geometry is trusted from the header; frame counts come from decoding.
    """
    path = Path(path)
    if not path.is_file():
        raise DecodeError(f"not a file: {path}")
    if path.stat().st_size == 0:
        raise DecodeError("empty file (0 bytes)")
    try:
        res = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
                             capture_output=True, text=True, timeout=timeout, errors="replace")
    except subprocess.TimeoutExpired:
        raise DecodeError(f"ffmpeg probe timed out after {timeout:.0f}s") from None
    err = res.stderr
    m = _STREAM.search(err)
    if not m:
        last = err.strip().splitlines()[-1] if err.strip() else "no output"
        raise DecodeError(f"no decodable video stream ({last})")
    w, h = int(m.group(1)), int(m.group(2))
    line = err[m.start():err.find("\n", m.start())]
    fps_m = _FPS.search(line)
    rot_m = _ROT.search(err)
    rot = 0
    if rot_m:
        rot = int(float(rot_m.group(1) or rot_m.group(2))) % 180
    if rot == 90:  # ffmpeg autorotates, so the decoded frame is transposed
        w, h = h, w
    return {"width": w, "height": h, "fps": float(fps_m.group(1)) if fps_m else 0.0}


def target_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(w, h) with the short side == ``short_side`` and both sides even (codec friendly)."""
    if short_side <= 0:
        return width - width % 2, height - height % 2
    if width <= height:
        w, h = short_side, round(height * short_side / width)
    else:
        w, h = round(width * short_side / height), short_side
    return max(2, w - w % 2), max(2, h - h % 2)


def validate_decode_params(short_side: int, fps: float, timeout: float,
                           max_frames: int) -> None:
    """Refuse impossible decode settings before any video is touched."""
    for key, v, ok in (("decode.short_side", short_side, short_side >= 0),
                       ("decode.fps", fps, fps >= 0), ("decode.timeout", timeout, timeout > 0),
                       ("decode.max_frames", max_frames, max_frames >= 0)):
        if not ok:
            raise ValueError(f"{key} must be {'> 0' if key == 'decode.timeout' else '>= 0'}, "
                             f"got {v}")
    if 0 < short_side < 2:
        raise ValueError(f"decode.short_side must be 0 (native) or >= 2, got {short_side}")


# Bump when decoding can give different frames for the same file (part of the stage hash).
DECODER_VERSION = 2

# Every line at level warning and above that speaks of damage (the level tag itself can be
# lost: ffmpeg's threads log concurrently and a message may continue another's line).
_ERROR_LINE = re.compile(r"\[(?:error|fatal|panic)\]|corrupt|damaged|partial file|missing|"
                         r"invalid|error|conceal|truncat", re.IGNORECASE)
_TAGS = re.compile(r" @ 0x[0-9a-f]+|\[(?:warning|error|fatal|panic)\] ")


def _errors(stderr: str, limit: int = 20) -> list[str]:
    """ffmpeg's lines about damaged data (errors, and warnings such as ``Packet corrupt ...,
    dropping it``), addresses and level tags dropped, deduplicated."""
    out: list[str] = []
    for line in stderr.splitlines():
        if _ERROR_LINE.search(line):
            line = _TAGS.sub("", line).strip()[:200]
            if line and line not in out:
                out.append(line)
    return out[:limit]


@functools.lru_cache(maxsize=1)
def _cli_help() -> str:
    return subprocess.run([ffmpeg_exe(), "-hide_banner", "-h", "full"], capture_output=True,
                          text=True, errors="replace").stdout


def _has_frame_stats() -> bool:
    """ffmpeg >= 6.1 writes per-frame stats (``-stats_enc_pre``); older builds decode without
    gap detection (damaged packets are still dropped, not concealed)."""
    return "stats_enc_pre" in _cli_help()


def whole_prefix(pts: list[int]) -> int:
    """How many decoded frames come before the first gap in their timestamps.

    ffmpeg drops a packet it found damaged (``-fflags +discardcorrupt``, ``-err_detect
    +explode``) instead of concealing it; a frame decoded after that point may show a gap
    (the dropped frame) or reference it, so only the frames before the first gap are whole.
    """
    if len(pts) < 2:
        return len(pts)
    steps = np.diff(np.asarray(pts, np.int64))
    step = np.median(steps[steps > 0]) if (steps > 0).any() else 0
    bad = np.flatnonzero((steps <= 0) | (steps > 1.5 * step))
    return int(bad[0]) + 1 if bad.size else len(pts)


def _run_ffmpeg(path, w: int, h: int, fps: float, max_frames: int, timeout: float,
                keep: int = 0) -> tuple[bytes, str, int, list[int]]:
    """Raw rgb24 frames, stderr, exit code and each output frame's pts."""
    import tempfile
    stream = ffmpeg.input(str(path), fflags="+discardcorrupt", err_detect="+explode")
    if keep:
        stream = stream.filter("trim", end_frame=keep)
    if fps and fps > 0:
        stream = stream.filter("fps", fps=fps)
    stream = stream.filter("scale", w, h, flags="area")
    with tempfile.TemporaryDirectory(prefix="motionclr-decode-") as tmp:
        stats = Path(tmp) / "frames.txt"
        # passthrough: no frame is duplicated to fill a timestamp gap (that would hide a
        # dropped one); the per-frame stats file gives each frame's pts (a gap = a frame
        # ffmpeg dropped as damaged), apart from stderr, which threads write concurrently.
        out_kw = {"format": "rawvideo", "pix_fmt": "rgb24",
                  # -fps_mode since ffmpeg 5.1; -vsync before
                  ("fps_mode" if "fps_mode" in _cli_help() else "vsync"): "passthrough"}
        if _has_frame_stats():
            out_kw.update(stats_enc_pre=str(stats), stats_enc_pre_fmt="{pts}")
        if max_frames > 0:
            out_kw["frames:v"] = max_frames
        cmd = stream.output("pipe:", **out_kw).global_args(
            "-nostdin", "-hide_banner", "-nostats", "-loglevel", "level+warning").compile(
            cmd=ffmpeg_exe())

        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        err_chunks: list[bytes] = []
        drain = threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()),
                                 daemon=True)
        drain.start()
        timed_out = threading.Event()

        def _kill():
            timed_out.set()
            proc.kill()

        timer = threading.Timer(timeout, _kill)
        timer.start()
        try:
            raw = proc.stdout.read()
            proc.wait()
        finally:
            timer.cancel()
            drain.join(timeout=5)
        if timed_out.is_set():
            raise DecodeError(f"ffmpeg timed out after {timeout:.0f}s")
        pts = [int(x) for x in stats.read_text().split()] if stats.is_file() else []
    return raw, b"".join(err_chunks).decode(errors="replace"), proc.returncode, pts


def decode_video(path: str | Path, short_side: int = 128, fps: float = 0.0,
                 timeout: float = 600.0, max_frames: int = 0,
                 max_pixels: int = 8192 * 8192) -> tuple[np.ndarray, dict]:
    """Decode ``path`` to uint8 RGB ``(T, H, W, 3)``: whole frames only.

    A damaged packet (a file cut short, flipped bits) is dropped rather than concealed, and
    only the frames before the first dropped one are kept (``whole_prefix``); ffmpeg's error
    lines are returned in ``info["decode_errors"]`` (recorded per video in the manifest).

    Returns:
        frames and an info dict: decoded ``n_frames``, ``fps`` (output rate), source
        ``src_width``/``src_height``/``src_fps``, output ``width``/``height``,
        ``decode_errors`` and ``frames_dropped`` (decoded after the first damaged one).
    Raises:
        DecodeError: missing/empty/non-video file, ffmpeg failure, timeout, 0 frames.
    """
    meta = probe(path, timeout=min(timeout, 60.0))
    if meta["width"] * meta["height"] > max_pixels:
        raise DecodeError(f"declared size {meta['width']}x{meta['height']} exceeds the "
                          f"{max_pixels}-pixel limit")
    w, h = target_size(meta["width"], meta["height"], short_side)
    raw, stderr, rc, pts = _run_ffmpeg(path, w, h, fps, max_frames, timeout)
    errors = _errors(stderr)
    frame_bytes = w * h * 3
    n = len(raw) // frame_bytes  # a trailing partial frame (truncated stream) is dropped
    dropped = 0
    if errors:
        if fps and fps > 0:
            # The fps filter fills gaps: find the first gap among the source frames, then
            # decode again, stopping at the last whole frame.
            pts = _run_ffmpeg(path, w, h, 0.0, 0, timeout)[3]
            keep = whole_prefix(pts)
            if 0 < keep < len(pts):
                dropped = len(pts) - keep
                raw, _, rc, _ = _run_ffmpeg(path, w, h, fps, max_frames, timeout, keep=keep)
                n = len(raw) // frame_bytes
        elif pts:  # passthrough: one output frame per decoded frame
            keep = whole_prefix(pts[:n])
            dropped, n = n - min(n, keep), min(n, keep)
    if rc != 0 and n == 0:
        last = errors[-1] if errors else (stderr.strip().splitlines() or ["no message"])[-1]
        raise DecodeError(f"ffmpeg failed (exit {rc}): {last}")
    if n == 0:
        raise DecodeError("decoded 0 frames" + (f" ({errors[0]})" if errors else ""))
    frames = np.frombuffer(raw, np.uint8, count=n * frame_bytes).reshape(n, h, w, 3)
    info = {"n_frames": n, "width": w, "height": h,
            "fps": float(fps) if fps and fps > 0 else meta["fps"],
            "src_width": meta["width"], "src_height": meta["height"], "src_fps": meta["fps"],
            "decode_errors": errors, "frames_dropped": dropped}
    return frames.copy(), info
