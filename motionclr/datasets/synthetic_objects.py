"""The object-motion embedded dataset: one textured object moving over a static background.

Class = the object's motion: move right/left/down/up, rotate clockwise/anticlockwise, zoom
in/out (the names and label order of ``synthetic.CLASSES``). The background is static and
drawn from a different distribution than the object: a dark, low-contrast smooth texture
(``BG_GAIN`` of the camera set's texture) against a bright, saturated, finer-grained
object, so the object is plainly visible in a single frame (``contrast``). Version 1 of the
embedded dataset (``synthetic.py``) drew its object from the *same* kind of texture and
colour range as the background, i.e. camouflaged it; ``camouflaged_object`` renders that
control for the tests.

The background, the object (shape, texture, colour), its position and speed are all drawn
per *video*. Version 1 of *this* generator drew the background per (class, group), so the 16 training clips of
a class showed only 4 scenes: with labels, a background told the class within the training
set and a supervised small3d learned that shortcut (train loss 0.07, test R@1 33 %; see
docs/datasets.md). Groups keep the UCF101 layout and split: groups 1..``test_groups`` of every
class are the test split (held-out groups, as UCF101 split 1), and no scene is shared by
two videos at all. Videos are MPEG-4 .avi in the UCF101 layout (read by the UCF101 source).
Same seed -> same videos.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from motionclr.datasets.synthetic import CLASSES, _texture, encode_video

VERSION = 3  # 2: per-video backgrounds, a longer ellipse; 3: faster rotations and zooms,
#              a contrast floor per video
MARKER = "synthetic-objects.json"
BG_GAIN = 0.45  # background texture values 64-255 -> 29-115: dark and low in contrast
# Sizes and speeds in px of a 96-px-high frame (scaled with the frame height).
SPEED = (0.8, 1.15)       # px/frame of the moving object
SPIN = (5.0, 8.0)         # deg/frame of the rotating object (70-112 deg over a 15-frame clip)
ZOOM = (0.02, 0.03)       # relative size change per frame of the zooming object
RADIUS = (14.0, 18.0)     # object half-size (long axis) for moves and rotations, px
MIN_RADIUS = 8.0          # the zooming object's half-size at its small end, px
MIN_CONTRAST = 4.0        # every rendered frame's object contrast (``contrast``) at least
MAX_REDRAWS = 20          # object colours tried per video before giving up


def _object_sprite(rng: np.random.Generator, r: float) -> tuple[np.ndarray, np.ndarray]:
    """A bright, saturated textured ellipse: float32 RGB (S, S, 3) in [0, 255] and alpha
    (S, S) in [0, 1], S = 2r+4 (2x supersampled then shrunk, so the edge is anti-aliased).
    The ellipse (aspect 0.5-0.7, random tilt) and the texture's blobs make a rotation
    visible in the silhouette and inside it."""
    s = int(np.ceil(2 * r)) + 4
    big = 2 * s
    # Finer than the background (scales 2-4 px at frame size) and higher in contrast.
    tex = np.zeros((big, big), np.float32)
    for scale in (4, 8):
        small = rng.random((big // scale, big // scale)).astype(np.float32)
        tex += cv2.resize(small, (big, big), interpolation=cv2.INTER_CUBIC)
    tex = (tex - tex.min()) / max(float(tex.max() - tex.min()), 1e-6)
    # A saturated bright colour: one channel full, the others anywhere in 0.15-0.8.
    colour = rng.uniform(0.15, 0.8, 3).astype(np.float32)
    colour[rng.integers(3)] = 1.0
    shade = 0.4 + 0.6 * tex                        # texture as brightness 40-100 %
    rgb = np.clip(255 * shade[..., None] * colour[None, None] + 70 * (1 - colour), 0, 255)
    yy, xx = np.mgrid[0:big, 0:big].astype(np.float32) - (big - 1) / 2
    tilt = float(rng.uniform(0, np.pi))
    u = xx * np.cos(tilt) + yy * np.sin(tilt)
    v = -xx * np.sin(tilt) + yy * np.cos(tilt)
    aspect = float(rng.uniform(0.5, 0.7))  # elongated: the silhouette shows a rotation
    alpha = ((u / (2 * r)) ** 2 + (v / (2 * r * aspect)) ** 2 <= 1).astype(np.float32)
    rgb = cv2.resize(rgb.astype(np.float32), (s, s), interpolation=cv2.INTER_AREA)
    alpha = cv2.resize(alpha, (s, s), interpolation=cv2.INTER_AREA)
    return rgb, alpha


def trajectory(name: str, t: int, n_frames: int, start: tuple[float, float], rate: float
               ) -> tuple[float, float, float, float]:
    """(cx, cy, angle in degrees anticlockwise on screen, scale) of the object at frame t.

    Moves: ``rate`` px/frame from ``start``; rotations: ``rate`` deg/frame about ``start``;
    zooms: size x (1 + rate) per frame (ZoomIn grows), scale 1 in the middle frame. Screen y
    points down, so MoveDown is +dy and clockwise on screen is a negative cv2 angle.
    """
    cx, cy = start
    angle, scale = 0.0, 1.0
    if name == "MoveRight":
        cx += rate * t
    elif name == "MoveLeft":
        cx -= rate * t
    elif name == "MoveDown":
        cy += rate * t
    elif name == "MoveUp":
        cy -= rate * t
    elif name == "RotateClockwise":
        angle = -rate * t
    elif name == "RotateAnticlockwise":
        angle = rate * t
    elif name == "ZoomIn":
        scale = (1 + rate) ** (t - (n_frames - 1) / 2)
    elif name == "ZoomOut":
        scale = (1 + rate) ** -(t - (n_frames - 1) / 2)
    return cx, cy, angle, scale


def _plan(name: str, rng: np.random.Generator, n_frames: int, w: int, h: int
          ) -> tuple[float, tuple[float, float], float]:
    """(object half-size r, start centre, rate) such that the object stays in the frame."""
    span = n_frames - 1
    k = h / 96  # the constants are for 96-px-high frames
    margin = 2.0 * k
    radius, min_radius = (RADIUS[0] * k, RADIUS[1] * k), MIN_RADIUS * k
    if name.startswith("Move"):
        r = float(rng.uniform(*radius))
        rate = float(rng.uniform(*SPEED)) * k
        travel = rate * span
        horizontal = name in ("MoveRight", "MoveLeft")
        room = (w if horizontal else h) - 2 * (r + margin) - travel
        if room < 0:
            raise ValueError(f"{n_frames} frames at {rate:.2f} px/frame do not fit a "
                             f"{w}x{h} frame; use fewer frames or a larger size")
        lo = r + margin + float(rng.uniform(0, room))        # the path's low end
        first = lo if name in ("MoveRight", "MoveDown") else lo + travel
        across = float(rng.uniform(r + margin, (h if horizontal else w) - r - margin))
        return r, ((first, across) if horizontal else (across, first)), rate
    if name.startswith("Rotate"):
        r = float(rng.uniform(*radius))
        rate = float(rng.uniform(*SPIN))
    else:
        rate = float(rng.uniform(*ZOOM))
        f = (1 + rate) ** (span / 2)  # size at either end / size in the middle frame
        # the large end must fit the frame, the small end stay >= MIN_RADIUS
        hi = min(radius[1], (min(w, h) / 2 - margin) / f)
        lo = max(min_radius * f, 0.8 * radius[0])
        if lo > hi:
            raise ValueError(f"a zoom over {n_frames} frames does not fit a {w}x{h} frame; "
                             "use fewer frames or a larger size")
        r = float(rng.uniform(lo, hi))
    far = r * ((1 + rate) ** (span / 2) if name.startswith("Zoom") else 1.0) + margin
    centre = (float(rng.uniform(far, w - far)), float(rng.uniform(far, h - far)))
    return r, centre, rate


def _composite(name: str, bgf: np.ndarray, sprite_alpha: tuple[np.ndarray, np.ndarray],
               n_frames: int, start: tuple[float, float], rate: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """The object ``sprite_alpha`` moved along its class trajectory over the static
    background ``bgf`` (float32 (H, W, 3)): uint8 frames (T, H, W, 3), alpha (T, H, W)."""
    sprite, alpha = sprite_alpha
    h, w = bgf.shape[:2]
    c = (sprite.shape[1] - 1) / 2
    frames = np.empty((n_frames, h, w, 3), np.uint8)
    masks = np.empty((n_frames, h, w), np.float32)
    for t in range(n_frames):
        cx, cy, angle, scale = trajectory(name, t, n_frames, start, rate)
        m = cv2.getRotationMatrix2D((c, c), angle, scale)
        m[0, 2] += cx - c
        m[1, 2] += cy - c
        obj = cv2.warpAffine(sprite, m, (w, h), flags=cv2.INTER_LINEAR)
        a = cv2.warpAffine(alpha, m, (w, h), flags=cv2.INTER_LINEAR)[..., None]
        frames[t] = np.clip(bgf * (1 - a) + obj * a + 0.5, 0, 255).astype(np.uint8)
        masks[t] = a[..., 0]
    return frames, masks


def _lowest_contrast(frames: np.ndarray, masks: np.ndarray) -> float:
    """The lowest ``contrast`` over the frames where it can be measured (a zoom's small end
    at a tiny frame size has too few object pixels: skipped)."""
    values = [np.inf]
    for f, a in zip(frames, masks):
        try:
            values.append(float(contrast(f[None], a[None])[0]))
        except ValueError:
            pass
    return min(values)


def render_video(label: int, rng: np.random.Generator, n_frames: int = 48,
                 size: tuple[int, int] = (128, 96), background: np.ndarray | None = None,
                 with_mask: bool = False):
    """uint8 (T, H, W, 3) frames of class ``label`` (and, with ``with_mask``, the object's
    float32 alpha (T, H, W) in [0, 1]). ``background``: the static scene (uint8 (H, W, 3));
    default: drawn from ``rng`` with ``background_for``."""
    w, h = size
    bg = background_for(rng, size) if background is None else background
    name = CLASSES[label]
    r, start, rate = _plan(name, rng, n_frames, w, h)
    bgf = bg.astype(np.float32)
    # An object colour that happens to lie near this video's background is redrawn (same
    # path), so every video keeps its object plainly visible in every frame.
    for _ in range(MAX_REDRAWS):
        frames, masks = _composite(name, bgf, _object_sprite(rng, r), n_frames, start, rate)
        if _lowest_contrast(frames, masks) >= MIN_CONTRAST:
            break
    else:
        raise ValueError(f"no object colour reached contrast {MIN_CONTRAST} against this "
                         f"background in {MAX_REDRAWS} draws")
    return (frames, masks) if with_mask else frames


def background_for(rng: np.random.Generator, size: tuple[int, int] = (128, 96)) -> np.ndarray:
    """The static scene: the camera set's smooth texture, darkened (x ``BG_GAIN``)."""
    w, h = size
    return (_texture(rng, h, w).astype(np.float32) * BG_GAIN).astype(np.uint8)


def camouflaged_object(rng: np.random.Generator, n_frames: int = 8,
                       size: tuple[int, int] = (128, 96)) -> tuple[np.ndarray, np.ndarray]:
    """The version-1 situation, as a control for ``contrast``: a moving ellipse cut from a
    second texture of the *same* kind and colour range as the (undarkened) background.
    Returns (frames uint8 (T, H, W, 3), alpha (T, H, W))."""
    w, h = size
    bg = _texture(rng, h, w).astype(np.float32)
    other = _texture(rng, h, w).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    frames = np.empty((n_frames, h, w, 3), np.uint8)
    masks = np.empty((n_frames, h, w), np.float32)
    for t in range(n_frames):
        cx, cy = w / 3 + t, h / 2
        a = (((xx - cx) / 16) ** 2 + ((yy - cy) / 12) ** 2 <= 1).astype(np.float32)
        frames[t] = (bg * (1 - a[..., None]) + other * a[..., None]).astype(np.uint8)
        masks[t] = a
    return frames, masks


def contrast(frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """The object's contrast against the background in each frame, (T,) float.

    Fisher's separation of the two pixel colour populations: the distance between the mean
    RGB of the object's pixels and of the background's, over the pooled RMS spread of each
    population about its own mean: ``|mu_o - mu_b| / sqrt((var_o + var_b) / 2)``, with var
    the total (summed over channels) variance. Object pixels: alpha >= 0.99 eroded by one
    pixel; background: alpha == 0 beyond a 2-px ring, so the anti-aliased edge and codec
    ringing count for neither. 0 = the object is drawn from the background's colours (a
    camouflaged object); >= 2 = its colours are plainly set apart.
    """
    out = np.empty(len(frames), np.float64)
    kernel = np.ones((3, 3), np.uint8)
    for t, (f, a) in enumerate(zip(frames, masks)):
        obj = cv2.erode((a >= 0.99).astype(np.uint8), kernel).astype(bool)
        bgm = ~cv2.dilate((a > 0).astype(np.uint8), kernel, iterations=2).astype(bool)
        if obj.sum() < 10 or bgm.sum() < 10:
            raise ValueError(f"frame {t}: too few object ({obj.sum()}) or background "
                             f"({bgm.sum()}) pixels to measure a contrast")
        po, pb = f[obj].astype(np.float64), f[bgm].astype(np.float64)
        spread = np.sqrt((po.var(0).sum() + pb.var(0).sum()) / 2)
        out[t] = np.linalg.norm(po.mean(0) - pb.mean(0)) / max(spread, 1e-6)
    return out


def render_member(label: int, group: int, clip: int, seed: int = 0, n_frames: int = 48,
                  size: tuple[int, int] = (128, 96), with_mask: bool = False):
    """The frames (and, with ``with_mask``, alpha) of video ``v_<class>_g<group>_c<clip>``:
    the background, the object and its motion all from (seed, label, group, clip), so no
    two videos share a scene (a scene shared within a class would be a label cue) and any
    video is regenerated alone."""
    bg = background_for(np.random.default_rng([seed, label, group, clip, 2]), size)
    rng = np.random.default_rng([seed, label, group, clip, 1])
    return render_video(label, rng, n_frames, size, bg, with_mask)


def is_current(root: str | Path) -> bool:
    """Whether ``root`` holds a dataset written by this generator version (any size)."""
    try:
        return json.loads((Path(root) / MARKER).read_text()).get("version") == VERSION
    except (OSError, ValueError):
        return False


def generate(root: str | Path, groups: int = 6, clips: int = 4, test_groups: int | None = None,
             n_frames: int = 48, size: tuple[int, int] = (128, 96), seed: int = 0) -> Path:
    """Write the dataset under ``root`` in the UCF101 layout; returns ``root``.

    8 classes x ``groups`` x ``clips`` videos (default 192: 64 test, 128 train) of
    ``n_frames`` frames. Groups 1..``test_groups`` of every class are the test split
    (default a third of the groups, at least one, as UCF101 split 1 holds out g01-g07 of
    25). Every video has its own background. Videos already written by the same
    generator version and arguments are kept (a rerun is free); other videos are rewritten.
    """
    root = Path(root)
    if test_groups is None:
        test_groups = max(1, groups // 3)
    if not 1 <= test_groups < groups:
        raise ValueError(f"test_groups must be in 1..{groups - 1} (groups={groups}), "
                         f"got {test_groups}")
    split_dir = root / "ucfTrainTestlist"
    split_dir.mkdir(parents=True, exist_ok=True)
    stamp = json.dumps({"version": VERSION, "n_frames": n_frames, "size": list(size),
                        "seed": seed, "kind": "objects"}, sort_keys=True)
    marker = root / MARKER
    keep = marker.is_file() and marker.read_text() == stamp
    train, test = [], []
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(exist_ok=True)
        for g in range(1, groups + 1):
            for c in range(1, clips + 1):
                rel = f"{name}/v_{name}_g{g:02d}_c{c:02d}.avi"
                if not (keep and (root / rel).is_file()):
                    encode_video(render_member(label, g, c, seed, n_frames, size), root / rel)
                (test if g <= test_groups else train).append((rel, label))
    (split_dir / "classInd.txt").write_text(
        "".join(f"{i + 1} {n}\n" for i, n in enumerate(CLASSES)))
    (split_dir / "trainlist01.txt").write_text("".join(f"{r} {lb + 1}\n" for r, lb in train))
    (split_dir / "testlist01.txt").write_text("".join(f"{r}\n" for r, _ in test))
    marker.write_text(stamp)
    return root
