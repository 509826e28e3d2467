"""The embedded dataset: short videos whose class is defined only by motion.

Each video shows a textured object moving over a textured background. Class = the object's
motion (four translation directions, two rotation senses, zoom in/out); texture, colours,
position, size and speed are random per video, so appearance carries no class information.
Videos are encoded with ffmpeg (MPEG-4 part 2 in .avi, like UCF101's xvid) and written in
the UCF101 layout with split files, so the demo exercises the same path as a real dataset.
Same seed -> same videos.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np

from motionclr.pipeline.decode import ffmpeg_exe

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


def render_video(label: int, rng: np.random.Generator, n_frames: int = 32,
                 size: tuple[int, int] = (128, 96)) -> np.ndarray:
    """uint8 (T, H, W, 3) frames of class ``label``."""
    w, h = size
    bg = _texture(rng, h, w)
    obj_size = int(rng.integers(h // 3, h // 2))
    obj = _texture(rng, obj_size * 2, obj_size * 2)   # room to rotate/zoom without edges
    speed = float(rng.uniform(1.0, 2.5))               # px/frame, or deg/frame x3, or % zoom
    cx, cy = float(rng.uniform(0.3, 0.7) * w), float(rng.uniform(0.3, 0.7) * h)
    shape_mask = np.zeros((obj_size * 2, obj_size * 2), np.uint8)
    if rng.random() < 0.5:
        cv2.circle(shape_mask, (obj_size, obj_size), obj_size // 2, 255, -1)
    else:
        q = obj_size // 2
        cv2.rectangle(shape_mask, (obj_size - q, obj_size - q), (obj_size + q, obj_size + q), 255, -1)
    frames = np.empty((n_frames, h, w, 3), np.uint8)
    name = CLASSES[label]
    for t in range(n_frames):
        dx = dy = angle = 0.0
        scale = 1.0
        k = t - n_frames / 2
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
        m = cv2.getRotationMatrix2D((obj_size, obj_size), angle, scale)
        m[0, 2] += cx + dx - obj_size
        m[1, 2] += cy + dy - obj_size
        tex = cv2.warpAffine(obj, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        # The mask moves with the translation and scale but not the rotation, so a rotating
        # object is a rotating texture inside a fixed silhouette (motion without shape change).
        m_mask = cv2.getRotationMatrix2D((obj_size, obj_size), 0.0, scale)
        m_mask[0, 2] += cx + dx - obj_size
        m_mask[1, 2] += cy + dy - obj_size
        mask = cv2.warpAffine(shape_mask, m_mask, (w, h), flags=cv2.INTER_LINEAR)[..., None] / 255.0
        frames[t] = (bg * (1 - mask) + tex * mask).astype(np.uint8)
    return frames


def encode_video(frames: np.ndarray, path: Path, fps: int = 25) -> None:
    """Write uint8 RGB frames as an MPEG-4 .avi with ffmpeg (written to a temp name first)."""
    t, h, w, _ = frames.shape
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    cmd = [ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{w}x{h}", "-r", str(fps), "-i", "pipe:", "-c:v", "mpeg4", "-q:v", "3",
           "-g", "12", "-pix_fmt", "yuv420p", str(tmp)]
    subprocess.run(cmd, input=frames.tobytes(), check=True, capture_output=True)
    tmp.replace(path)


def generate(root: str | Path, groups: int = 4, clips: int = 3, test_groups: int = 1,
             n_frames: int = 32, size: tuple[int, int] = (128, 96), seed: int = 0) -> Path:
    """Write the dataset under ``root`` in the UCF101 layout; existing videos are kept.

    Groups 1..``test_groups`` of every class form the test split (as UCF101 split 1 uses
    g01-g07), the rest train. Returns ``root``.
    """
    root = Path(root)
    split_dir = root / "ucfTrainTestlist"
    split_dir.mkdir(parents=True, exist_ok=True)
    train, test = [], []
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(exist_ok=True)
        for g in range(1, groups + 1):
            for c in range(1, clips + 1):
                rel = f"{name}/v_{name}_g{g:02d}_c{c:02d}.avi"
                # One generator per video, so any subset can be regenerated identically.
                rng = np.random.default_rng([seed, label, g, c])
                if not (root / rel).is_file():
                    encode_video(render_video(label, rng, n_frames, size), root / rel)
                (test if g <= test_groups else train).append((rel, label))
    (split_dir / "classInd.txt").write_text(
        "".join(f"{i + 1} {n}\n" for i, n in enumerate(CLASSES)))
    (split_dir / "trainlist01.txt").write_text("".join(f"{r} {lb + 1}\n" for r, lb in train))
    (split_dir / "testlist01.txt").write_text("".join(f"{r}\n" for r, _ in test))
    return root
