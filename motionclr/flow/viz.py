"""Flow visualisation: Middlebury colour wheel, RGB|flow PNG strips and side-by-side mp4s.

Colour coding follows Baker et al., "A Database and Evaluation Methodology for Optical Flow"
(IJCV 2011): hue = direction on a 55-colour wheel (RY 15, YG 6, GC 4, CB 11, BM 13, MR 6),
saturation = magnitude / ``max_flow``; zero flow is white, +x (rightwards) is red, and flow
longer than ``max_flow`` is drawn darkened (x0.75). One ``max_flow`` per video keeps the
colours comparable across frames.

``main(argv)`` is ``motionclr viz --cache DIR --video ID --out file.png|file.mp4``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

_SEGMENTS = (("RY", 15), ("YG", 6), ("GC", 4), ("CB", 11), ("BM", 13), ("MR", 6))


def make_colorwheel() -> np.ndarray:
    """The Middlebury wheel: float ``(55, 3)`` RGB in 0..255, red first, going to yellow."""
    rows = []
    for name, n in _SEGMENTS:
        ramp = np.floor(255 * np.arange(n) / n)
        full, zero = np.full(n, 255.0), np.zeros(n)
        rows.append({"RY": (full, ramp, zero), "YG": (255 - ramp, full, zero),
                     "GC": (zero, full, ramp), "CB": (zero, 255 - ramp, full),
                     "BM": (ramp, zero, full), "MR": (full, zero, 255 - ramp)}[name])
    return np.concatenate([np.stack(r, axis=1) for r in rows])


def flow_to_color(flow: np.ndarray, max_flow: float | None = None) -> np.ndarray:
    """Flow ``(..., H, W, 2)`` (dx, dy) -> uint8 RGB ``(..., H, W, 3)``.

    Args:
        flow: float flow in pixels; NaN/inf count as 0.
        max_flow: magnitude drawn fully saturated; default: the largest magnitude in ``flow``.
    """
    flow = np.nan_to_num(np.asarray(flow, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    u, v = flow[..., 0], flow[..., 1]
    rad = np.hypot(u, v)
    if max_flow is None:
        max_flow = float(rad.max()) if rad.size else 0.0
    rad = rad / max(max_flow, 1e-9)
    wheel = make_colorwheel() / 255.0
    ncols = len(wheel)
    angle = np.arctan2(-v, -u) / np.pi            # -1..1; +x (u > 0, v = 0) -> -1 -> red
    fk = (angle + 1) / 2 * (ncols - 1)
    k0 = np.floor(fk).astype(int)
    k1 = (k0 + 1) % ncols
    f = (fk - k0)[..., None]
    col = (1 - f) * wheel[k0] + f * wheel[k1]
    inside = (rad <= 1)[..., None]
    col = np.where(inside, 1 - rad[..., None] * (1 - col), col * 0.75)
    return np.clip(np.floor(255 * col), 0, 255).astype(np.uint8)


def side_by_side(rgb: np.ndarray, flow: np.ndarray, max_flow: float | None = None) -> np.ndarray:
    """Frames ``[rgb_i | colour(flow_i)]``: uint8 ``(T-1, H, 2W, 3)``.

    Args:
        rgb: uint8 ``(T, H, W, 3)``; flow: float ``(T-1, H, W, 2)`` (flow i: frame i -> i+1).
        max_flow: shared saturation magnitude; default the video's largest magnitude.
    """
    if rgb.shape[0] != flow.shape[0] + 1 or rgb.shape[1:3] != flow.shape[1:3]:
        raise ValueError(f"rgb {rgb.shape} and flow {flow.shape} do not match "
                         f"(need T frames and T-1 flows of the same size)")
    colours = flow_to_color(flow, max_flow)
    return np.concatenate([rgb[:-1], colours], axis=2)


def strip(rgb: np.ndarray, flow: np.ndarray, rows: int = 6,
          max_flow: float | None = None) -> np.ndarray:
    """A PNG-ready image: ``rows`` evenly spaced pairs stacked vertically, each ``rgb | flow``.

    Returns:
        uint8 ``(rows*H, 2W, 3)`` (fewer rows if the video has fewer pairs).
    """
    frames = side_by_side(rgb, flow, max_flow)
    idx = np.unique(np.linspace(0, len(frames) - 1, num=min(rows, len(frames))).round().astype(int))
    return np.concatenate(list(frames[idx]), axis=0)


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Write uint8 RGB ``(H, W, 3)`` as PNG."""
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")


def write_mp4(path: str | Path, frames: np.ndarray, fps: float = 10.0) -> None:
    """Write uint8 RGB ``(T, H, W, 3)`` as H.264 mp4 (sizes padded to even for yuv420p)."""
    import imageio_ffmpeg

    h, w = frames.shape[1:3]
    frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    writer = imageio_ffmpeg.write_frames(str(path), (frames.shape[2], frames.shape[1]), fps=fps,
                                         codec="libx264", pix_fmt_out="yuv420p",
                                         macro_block_size=1, quality=8)
    writer.send(None)
    for f in frames:
        writer.send(np.ascontiguousarray(f))
    writer.close()


def locate_video(cache: str | Path, dataset: str, video: str, load_manifest) -> Path:
    """The finished flow stage holding ``video``: ``cache`` itself when it is a stage, else
    the stages under ``cache/<dataset>/`` (every dataset when none is given).

    Raises:
        FileNotFoundError: no finished stage there.
        KeyError: no stage holds ``video``; the message lists the closest ids.
        ValueError: several stages hold it (pass the one meant as ``--cache``).
    """
    import difflib
    cache = Path(cache)
    if (cache / "manifest.json").is_file():
        stages = [cache]
    else:
        pattern = f"{dataset}/flow-*/manifest.json" if dataset else "*/flow-*/manifest.json"
        stages = sorted(m.parent for m in cache.glob(pattern)) or sorted(
            m.parent for m in cache.glob("flow-*/manifest.json"))  # a dataset's directory
    if not stages:
        where = cache / dataset if dataset else cache
        raise FileNotFoundError(f"no finished flow stage in {where}: pass a flow-<hash> "
                                "directory, or a cache root with --dataset")
    ids = {s: [v["video_id"] for v in load_manifest(s)["videos"]] for s in stages}
    holding = [s for s in stages if video in ids[s]]
    if len(holding) == 1:
        return holding[0]
    if holding:
        raise ValueError(f"{len(holding)} flow stages hold {video!r}; pass one as --cache: "
                         + ", ".join(map(str, holding)))
    known = sorted({i for v in ids.values() for i in v})
    close = difflib.get_close_matches(video, known, n=5, cutoff=0.4)
    where = stages[0] if len(stages) == 1 else f"{len(stages)} flow stages under {cache}"
    raise KeyError(f"video {video!r} is not in {where}; "
                   + (f"closest: {', '.join(close)}" if close else
                      f"{len(known)} videos, e.g. {', '.join(known[:3])}"))


def main(argv: list[str] | None = None) -> int:
    """``motionclr viz``: render a cached video's RGB and flow side by side."""
    ap = argparse.ArgumentParser(prog="motionclr viz", description=__doc__.splitlines()[0])
    ap.add_argument("--cache", required=True,
                    help="a flow stage directory (flow-<hash>), or a cache root with --dataset")
    ap.add_argument("--dataset", default="",
                    help="with a cache root: the dataset whose flow stages hold the video")
    ap.add_argument("--video", required=True, help="video id inside the cache")
    ap.add_argument("--out", required=True, help="output .png (strip) or .mp4 (side by side)")
    ap.add_argument("--rows", type=int, default=6, help="pairs shown in a PNG strip")
    ap.add_argument("--max-flow", type=float, default=None,
                    help="magnitude drawn fully saturated (default: the video's maximum)")
    ap.add_argument("--fps", type=float, default=10.0, help="mp4 frame rate")
    args = ap.parse_args(argv)

    from motionclr.flow.quantize import dequantize
    from motionclr.storage.shards import load_manifest, read_video  # lazy: only the CLI

    stage = locate_video(args.cache, args.dataset, args.video, load_manifest)
    rgb, qflow, attrs = read_video(stage, args.video)
    flow = dequantize(qflow, float(attrs["bound"]))
    out = Path(args.out)
    if out.suffix.lower() == ".png":
        write_png(out, strip(rgb, flow, args.rows, args.max_flow))
    elif out.suffix.lower() == ".mp4":
        write_mp4(out, side_by_side(rgb, flow, args.max_flow), args.fps)
    else:
        ap.error(f"--out must end in .png or .mp4, got {out.name}")
    print(f"wrote {out} ({len(flow)} flow fields, bound {attrs['bound']})")
    return 0


__all__ = ["make_colorwheel", "flow_to_color", "side_by_side", "strip", "write_png",
           "write_mp4", "locate_video", "main"]
