"""Decode a video to uint8 RGB frames with ffmpeg (through ffmpeg-python).

The ffmpeg binary comes from PATH, else from imageio-ffmpeg's bundled build. Frames are piped
out as raw rgb24, resized so the short side is ``short_side`` (even sizes), optionally
resampled to ``fps``. What is recorded is the number of frames actually decoded, never the
container's claim. stderr is drained on a thread (a full pipe would deadlock ffmpeg) and a
timer kills ffmpeg after ``timeout`` seconds.
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


class DecodeError(RuntimeError):
    """A video that cannot be used; the message is the reason recorded in the manifest."""


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    exe = shutil.which("ffmpeg")
    if exe:
        return exe
    try:
        import imageio_ffmpeg
        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as e:  # noqa: BLE001 - report why no binary was found
        raise DecodeError(f"no ffmpeg binary on PATH and imageio-ffmpeg failed: {e}") from e


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


def decode_video(path: str | Path, short_side: int = 128, fps: float = 0.0,
                 timeout: float = 600.0, max_frames: int = 0,
                 max_pixels: int = 8192 * 8192) -> tuple[np.ndarray, dict]:
    """Decode ``path`` to uint8 RGB ``(T, H, W, 3)``.

    Returns:
        frames and an info dict: decoded ``n_frames``, ``fps`` (output rate), source
        ``src_width``/``src_height``/``src_fps`` and output ``width``/``height``.
    Raises:
        DecodeError: missing/empty/non-video file, ffmpeg failure, timeout, 0 frames.
    """
    meta = probe(path, timeout=min(timeout, 60.0))
    if meta["width"] * meta["height"] > max_pixels:
        raise DecodeError(f"declared size {meta['width']}x{meta['height']} exceeds the "
                          f"{max_pixels}-pixel limit")
    w, h = target_size(meta["width"], meta["height"], short_side)
    stream = ffmpeg.input(str(path))
    if fps and fps > 0:
        stream = stream.filter("fps", fps=fps)
    stream = stream.filter("scale", w, h, flags="area")
    out_kw = {"format": "rawvideo", "pix_fmt": "rgb24"}
    if max_frames > 0:
        out_kw["frames:v"] = max_frames
    cmd = stream.output("pipe:", **out_kw).global_args(
        "-nostdin", "-hide_banner", "-loglevel", "error").compile(cmd=ffmpeg_exe())

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    err_chunks: list[bytes] = []
    drain = threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()), daemon=True)
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
    frame_bytes = w * h * 3
    n = len(raw) // frame_bytes  # a trailing partial frame (truncated stream) is dropped
    stderr = b"".join(err_chunks).decode(errors="replace").strip()
    if proc.returncode != 0 and n == 0:
        raise DecodeError(f"ffmpeg failed (exit {proc.returncode}): "
                          f"{stderr.splitlines()[-1] if stderr else 'no message'}")
    if n == 0:
        raise DecodeError("decoded 0 frames")
    frames = np.frombuffer(raw, np.uint8, count=n * frame_bytes).reshape(n, h, w, 3)
    info = {"n_frames": n, "width": w, "height": h,
            "fps": float(fps) if fps and fps > 0 else meta["fps"],
            "src_width": meta["width"], "src_height": meta["height"], "src_fps": meta["fps"],
            "ffmpeg_warnings": stderr[-2000:]}
    return frames.copy(), info
