"""The embedded dataset: short videos whose class is defined only by motion.

Each video is a camera move over a random textured scene. Class = the motion of the whole
frame (pan in four directions, rotation in two senses, zoom in/out); texture, colours,
rotation/zoom centre and speed are random per video, so appearance carries no class
information, and the optical flow carries nothing but the motion (no object silhouette or
position that a flow key could be matched by). Videos are encoded with ffmpeg (MPEG-4
part 2 in .avi, like UCF101's xvid) and written in the UCF101 layout with split files, so
the demo exercises the same path as a real dataset. Same seed -> same videos.

Why camera motion rather than an object moving over a background (the first version): the
version-1 object was camouflaged, drawn from the same kind of texture and colour range as the
background (a supervised small3d reached 8 % test R@1 on it at 96 videos, 40 epochs; 42-50 %
in later measurements at the bench's budget). The RGB path was not at fault: with only the
background darkened (x0.6) the same supervised model reaches 94-97 %, and on other
object-over-background videos 98-100 %. Object motion is learnable from RGB; it has its own
embedded dataset now, ``synthetic_objects.py`` (``synthetic-objects``). This set keeps the
other case: its flow carries nothing but the motion (no object silhouette or position that a
cross-modal key could be matched by instead of motion).

``EMBEDDED`` names the generator module of each embedded dataset (``generator``).
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import cv2
import numpy as np

from motionclr.tools import ffmpeg_exe

VERSION = 2  # 1: an object over a background; 2: camera motion of the whole scene
CLASSES = ["MoveRight", "MoveLeft", "MoveDown", "MoveUp",
           "RotateClockwise", "RotateAnticlockwise", "ZoomIn", "ZoomOut"]


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth random colour texture (blurred noise at a few scales), uint8 (h, w, 3)."""
    tex = np.zeros((h, w, 3), np.float32)
    for scale in (4, 8, 16):
        small = rng.random((max(h // scale, 2), max(w // scale, 2), 3)).astype(np.float32)
        tex += cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    tex -= tex.min()
    tex /= max(tex.max(), 1e-6)
    tint = rng.random(3).astype(np.float32)
    return np.clip(255 * (0.25 + 0.6 * tex * (0.5 + tint)), 0, 255).astype(np.uint8)


def motion_at(name: str, t: int, n_frames: int, speed: float) -> tuple[float, float, float, float]:
    """(dx, dy, angle in degrees anticlockwise on screen, scale) of the scene at frame t.

    Translation ``speed`` px/frame, rotation ``3 * speed`` deg/frame, zoom ``1.2 * speed``
    %/frame; screen y points down, so MoveDown is +dy (flow dy > 0).
    """
    k = t - n_frames / 2
    dx = dy = angle = 0.0
    scale = 1.0
    if name == "MoveRight":
        dx = speed * k
    elif name == "MoveLeft":
        dx = -speed * k
    elif name == "MoveDown":
        dy = speed * k
    elif name == "MoveUp":
        dy = -speed * k
    elif name == "RotateClockwise":
        angle = -3 * speed * t   # cv2 angles are anticlockwise-positive on screen
    elif name == "RotateAnticlockwise":
        angle = 3 * speed * t
    elif name == "ZoomIn":
        scale = (1 + 0.012 * speed) ** k
    elif name == "ZoomOut":
        scale = (1 + 0.012 * speed) ** -k
    return dx, dy, angle, scale


def render_video(label: int, rng: np.random.Generator, n_frames: int = 32,
                 size: tuple[int, int] = (128, 96)) -> np.ndarray:
    """uint8 (T, H, W, 3) frames of class ``label``: a view of a scene 3x the frame size
    moved by the class's motion about a centre near the middle of the frame."""
    w, h = size
    scene = _texture(rng, h * 3, w * 3)
    speed = float(rng.uniform(1.0, 2.5))
    # The rotation/zoom centre, in scene coordinates, within a quarter frame of the middle.
    cx = w * 1.5 + float(rng.uniform(-w / 4, w / 4))
    cy = h * 1.5 + float(rng.uniform(-h / 4, h / 4))
    frames = np.empty((n_frames, h, w, 3), np.uint8)
    for t in range(n_frames):
        dx, dy, angle, scale = motion_at(CLASSES[label], t, n_frames, speed)
        m = cv2.getRotationMatrix2D((cx, cy), angle, scale)
        # then shift so the centre lands near the frame's middle, plus the pan
        m[0, 2] += dx - (cx - w / 2)
        m[1, 2] += dy - (cy - h / 2)
        frames[t] = cv2.warpAffine(scene, m, (w, h), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REFLECT)
    return frames


EMBEDDED = {"synthetic": "motionclr.datasets.synthetic",
            "synthetic-objects": "motionclr.datasets.synthetic_objects"}


def generator(dataset: str):
    """The generator module (``generate``, ``is_current``, ``CLASSES``) of an embedded
    dataset; a clear error for any other name."""
    import importlib
    if dataset not in EMBEDDED:
        raise ValueError(f"{dataset!r} is not an embedded dataset that `motionclr generate` "
                         f"can write; embedded: {sorted(EMBEDDED)}")
    return importlib.import_module(EMBEDDED[dataset])


def encode_video(frames: np.ndarray, path: Path, fps: int = 25) -> None:
    """Write uint8 RGB frames as an MPEG-4 .avi with ffmpeg (written to a temp name first)."""
    t, h, w, _ = frames.shape
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    cmd = [ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{w}x{h}", "-r", str(fps), "-i", "pipe:", "-c:v", "mpeg4", "-q:v", "3",
           "-g", "12", "-pix_fmt", "yuv420p", str(tmp)]
    subprocess.run(cmd, input=frames.tobytes(), check=True, capture_output=True)
    tmp.replace(path)


def is_current(root: str | Path) -> bool:
    """Whether ``root`` holds a dataset written by this generator version (any size)."""
    marker = Path(root) / "synthetic.json"
    try:
        return json.loads(marker.read_text()).get("version") == VERSION
    except (OSError, ValueError):
        return False


def generate(root: str | Path, groups: int = 6, clips: int = 4, test_groups: int | None = None,
             n_frames: int = 32, size: tuple[int, int] = (128, 96), seed: int = 0) -> Path:
    """Write the dataset under ``root`` in the UCF101 layout; returns ``root``.

    8 classes x ``groups`` x ``clips`` videos (default 192: 64 test, 128 train). Groups
    1..``test_groups`` of every class form the test split (default: a third of the groups,
    at least one, as UCF101 split 1 holds out g01-g07 of 25), the rest train. Videos already written with the same generator version and arguments
    are kept (a rerun is free); any other content of ``root``'s video files is rewritten.
    """
    root = Path(root)
    if test_groups is None:
        test_groups = max(1, groups // 3)
    split_dir = root / "ucfTrainTestlist"
    split_dir.mkdir(parents=True, exist_ok=True)
    stamp = json.dumps({"version": VERSION, "n_frames": n_frames, "size": list(size),
                        "seed": seed}, sort_keys=True)
    marker = root / "synthetic.json"
    # Videos from another generator version (or size/seed) would silently mix in.
    keep = marker.is_file() and marker.read_text() == stamp
    train, test = [], []
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(exist_ok=True)
        for g in range(1, groups + 1):
            for c in range(1, clips + 1):
                rel = f"{name}/v_{name}_g{g:02d}_c{c:02d}.avi"
                # One generator per video, so any subset can be regenerated identically.
                rng = np.random.default_rng([seed, label, g, c])
                if not (keep and (root / rel).is_file()):
                    encode_video(render_video(label, rng, n_frames, size), root / rel)
                (test if g <= test_groups else train).append((rel, label))
    (split_dir / "classInd.txt").write_text(
        "".join(f"{i + 1} {n}\n" for i, n in enumerate(CLASSES)))
    (split_dir / "trainlist01.txt").write_text("".join(f"{r} {lb + 1}\n" for r, lb in train))
    (split_dir / "testlist01.txt").write_text("".join(f"{r}\n" for r, _ in test))
    marker.write_text(stamp)
    return root
