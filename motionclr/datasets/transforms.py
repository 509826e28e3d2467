"""Batched, on-device augmentation for RGB + flow clips.

Workers hand over uint8 clips (a float clip costs 4x the bytes through shared memory); the
training loop moves the batch to the device and calls ``GPUAugment`` once per view:

    aug = GPUAugment(AugmentCfg(size=112, flip="shared"))
    flip = aug.draw_flip(B, gen, device)           # once per pair when flip == "shared"
    q = aug({"rgb": rgb_q, "flow": flow_q}, gen, flip=flip)
    k = aug({"rgb": rgb_k, "flow": flow_k}, gen, flip=flip)
    # or: q, k = aug.views([batch_q, batch_k], gen)

Layout: ``rgb`` uint8 ``(B, 3, T, H, W)``, ``flow`` uint8 ``(B, 2, T, H, W)`` (dx, dy),
quantised as ``q = round((v + b) * 255 / 2b)``. Every random draw comes from the
``torch.Generator`` passed in, one draw per sample (never per pixel, never per frame), so
a clip's frames share one crop, one flip and one colour jitter.

Geometric conventions (image coordinates: x to the right, y down):
  * crop + resize: the same box for rgb and flow of a sample; flow vectors are rescaled with
    the image (dx by out_w / crop_w, dy by out_h / crop_h) so they stay in output pixels.
  * horizontal flip mirrors the image and negates dx: a flow of +x becomes -x.
  * flow rotation (MSCL's FRA) by angle a: (dx, dy) -> (dx cos a - dy sin a,
    dx sin a + dy cos a). In image coordinates (y down) a positive angle turns clockwise on
    screen: 90 deg maps a (1, 0) vector to (0, 1), i.e. "right" becomes "down". With
    ``rotate_field=True`` the field itself is rotated the same way about the frame centre
    (content right of the centre moves below it), so the result is the flow of a rotated
    scene; with ``False`` only the vectors turn, as in MSCL's released code.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

FLIP_POLICIES = ("off", "shared", "independent")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_GRAY = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale


# ----------------------------------------------------------------------------- helpers

def _rand(shape, generator: torch.Generator | None, device) -> torch.Tensor:
    """U[0,1) drawn on the generator's device, then moved: a CPU generator works for CUDA
    data and a CUDA generator for CUDA data, with identical streams for identical seeds."""
    gdev = generator.device if generator is not None else "cpu"
    return torch.rand(shape, generator=generator, device=gdev).to(device)


def _uniform(shape, lo: float, hi: float, generator, device) -> torch.Tensor:
    return lo + (hi - lo) * _rand(shape, generator, device)


def _bernoulli(n: int, p: float, generator, device) -> torch.Tensor:
    return _rand((n,), generator, device) < p


def _geometry(batch: dict) -> tuple[int, int, int, torch.device]:
    x = batch["rgb"] if "rgb" in batch else batch["flow"]
    if "rgb" in batch and "flow" in batch and batch["rgb"].shape[-2:] != batch["flow"].shape[-2:]:
        raise ValueError(f"rgb {tuple(batch['rgb'].shape)} and flow {tuple(batch['flow'].shape)}"
                         " differ in frame size; one crop box cannot fit both")
    return x.shape[0], x.shape[-2], x.shape[-1], x.device


# ----------------------------------------------------------------------------- dtype

def channels_first(batch: dict) -> dict:
    """``(B, T, H, W, C)`` rgb/flow -> ``(B, C, T, H, W)`` views (no copy)."""
    out = dict(batch)
    for k in ("rgb", "flow"):
        if k in batch:
            out[k] = batch[k].permute(0, 4, 1, 2, 3)
    return out


def to_float(batch: dict, bound: float = 20.0) -> dict:
    """uint8 -> float32: rgb to [0, 1], flow dequantised to pixels (``q * 2b/255 - b``).

    Non-tensor and non-image keys pass through unchanged; float inputs are left as they are.
    """
    out = dict(batch)
    if "rgb" in batch and batch["rgb"].dtype == torch.uint8:
        out["rgb"] = batch["rgb"].float().div_(255.0)
    if "flow" in batch and batch["flow"].dtype == torch.uint8:
        out["flow"] = batch["flow"].float().mul_(2.0 * bound / 255.0).sub_(bound)
    return out


# ----------------------------------------------------------------------------- crops

def _draw_sizes(n: int, H: int, W: int, scale, ratio, tries: int, generator, device):
    """torchvision's RandomResizedCrop size draw, for ``n`` samples at once.

    Returns integer ``(w, h)`` of the first of ``tries`` draws that fits in the frame, and a
    mask of samples where none fitted (their size is the whole frame).
    """
    area = H * W * _uniform((n, tries), scale[0], scale[1], generator, device)
    logr = _uniform((n, tries), math.log(ratio[0]), math.log(ratio[1]), generator, device)
    r = torch.exp(logr)
    w = torch.sqrt(area * r).round()
    h = torch.sqrt(area / r).round()
    fits = (w >= 1) & (h >= 1) & (w <= W) & (h <= H)
    first = fits.float().argmax(dim=1)  # index of the first fitting draw (0 if none)
    rows = torch.arange(n, device=device)
    w, h = w[rows, first], h[rows, first]
    none = ~fits.any(dim=1)
    w = torch.where(none, torch.full_like(w, W), w)
    h = torch.where(none, torch.full_like(h, H), h)
    return w, h, none


def random_resized_crop_boxes(n: int, H: int, W: int, generator=None, device="cpu",
                              scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3), tries: int = 10):
    """Boxes ``(n, 4)`` float ``[x0, y0, w, h]`` in pixels, one per sample.

    Size as torchvision (area fraction ~ U(scale), log aspect ~ U(log ratio), first of
    ``tries`` that fits); if none fits we fall back to the whole frame (torchvision falls back
    to a ratio-clamped centre crop; this only matters for extreme ratios).
    """
    w, h, _ = _draw_sizes(n, H, W, scale, ratio, tries, generator, device)
    x0 = torch.floor(_rand((n,), generator, device) * (W - w + 1))
    y0 = torch.floor(_rand((n,), generator, device) * (H - h + 1))
    return torch.stack([x0, y0, w, h], dim=1)


def center_crop_boxes(n: int, H: int, W: int, out_size, device="cpu"):
    """Deterministic eval box: the largest centred box with the output's aspect ratio
    (for a square output: resize the short side to ``size``, then centre-crop)."""
    oh, ow = (out_size, out_size) if isinstance(out_size, int) else out_size
    s = min(W / ow, H / oh)
    w, h = round(ow * s), round(oh * s)
    x0, y0 = (W - w) // 2, (H - h) // 2
    return torch.tensor([[x0, y0, w, h]], dtype=torch.float32, device=device).repeat(n, 1)


_COVERAGE = ((4, 0.9), (8, 0.8), (12, 0.7))  # MCL: box area in cells -> required coverage


def motion_box(motion_map: torch.Tensor, top_frac: float = 0.1):
    """High-motion box of each sample from a coarse map ``(B, gh, gw)``.

    The top ``max(1, int(top_frac * gh * gw))`` cells (4 of 49, as MCL) span the box.
    Returns ``(rmin, rmax, cmin, cmax)`` inclusive cell indices, each ``(B,)`` long.
    """
    B, gh, gw = motion_map.shape
    k = max(1, int(top_frac * gh * gw))
    top = motion_map.reshape(B, -1).topk(k, dim=1).indices
    rows, cols = top // gw, top % gw
    return rows.min(1).values, rows.max(1).values, cols.min(1).values, cols.max(1).values


def motion_focused_crop_boxes(motion_map: torch.Tensor, H: int, W: int, generator=None,
                              scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3), top_frac: float = 0.1,
                              size_tries: int = 20, pos_tries: int = 40):
    """MCL's motion-focused crop (methods.md 4.3), vectorised over the batch.

    The box of the top-``top_frac`` motion cells has area ``c`` cells; the crop must cover
    it by 0.9 (c <= 4), 0.8 (c <= 8), 0.7 (c <= 12), or nothing (c > 12: plain random crop).
    Coverage = (fraction of the box's rows inside the crop) x (fraction of its columns).
    The size is the first of ``size_tries`` scale/aspect draws that fits; for it, the first
    of ``pos_tries`` random positions that meets the coverage is used, else the best of them.
    Where no size fits, the crop is the whole frame (it contains the box; MCL uses a corner
    crop there, a case that essentially never happens with these ranges).

    Args:
        motion_map: ``(B, gh, gw)`` non-negative motion per cell (e.g. 7x7).
    Returns:
        ``(B, 4)`` float boxes ``[x0, y0, w, h]`` in pixels.
    """
    B, gh, gw = motion_map.shape
    device = motion_map.device
    rmin, rmax, cmin, cmax = motion_box(motion_map, top_frac)
    cells = ((rmax - rmin + 1) * (cmax - cmin + 1)).float()
    need = torch.zeros(B, device=device)
    for c, cov in reversed(_COVERAGE):  # smallest bracket last so it wins
        need = torch.where(cells <= c, torch.full_like(need, cov), need)
    by0, by1 = rmin.float() * H / gh, (rmax + 1).float() * H / gh
    bx0, bx1 = cmin.float() * W / gw, (cmax + 1).float() * W / gw

    w, h, _ = _draw_sizes(B, H, W, scale, ratio, size_tries, generator, device)
    x0 = torch.floor(_rand((B, pos_tries), generator, device) * (W - w + 1)[:, None])
    y0 = torch.floor(_rand((B, pos_tries), generator, device) * (H - h + 1)[:, None])
    ov_x = (torch.minimum(x0 + w[:, None], bx1[:, None]) - torch.maximum(x0, bx0[:, None]))
    ov_y = (torch.minimum(y0 + h[:, None], by1[:, None]) - torch.maximum(y0, by0[:, None]))
    cov = (ov_x.clamp(min=0) / (bx1 - bx0)[:, None]) * (ov_y.clamp(min=0) / (by1 - by0)[:, None])
    ok = cov >= need[:, None] - 1e-6
    pick = torch.where(ok.any(1), ok.float().argmax(1), cov.argmax(1))
    rows = torch.arange(B, device=device)
    return torch.stack([x0[rows, pick], y0[rows, pick], w, h], dim=1)


def crop_resize(x: torch.Tensor, boxes: torch.Tensor, size) -> torch.Tensor:
    """Crop each sample's box and resize it to ``size`` (bilinear, area-averaged when shrinking).

    Uses ``roi_align`` with an adaptive sampling ratio, so downscaling averages
    ``ceil(box/out)`` samples per output pixel (an antialiased resize) and upscaling is plain
    bilinear interpolation at output pixel centres.

    Args:
        x: float ``(B, C, T, H, W)``.
        boxes: ``(B, 4)`` ``[x0, y0, w, h]`` in pixels (pixel i spans [i, i+1)).
        size: int or ``(out_h, out_w)``.
    Returns:
        ``(B, C, T, out_h, out_w)``; values are not rescaled (see ``crop_resize_flow``).
    """
    oh, ow = (size, size) if isinstance(size, int) else size
    B, C, T, H, W = x.shape
    b = boxes.to(device=x.device, dtype=x.dtype)
    rois = torch.cat([torch.arange(B, device=x.device, dtype=x.dtype)[:, None],
                      b[:, :2], b[:, :2] + b[:, 2:]], dim=1)
    y = roi_align(x.reshape(B, C * T, H, W), rois, (oh, ow), spatial_scale=1.0,
                  sampling_ratio=-1, aligned=True)
    return y.reshape(B, C, T, oh, ow)


def crop_resize_flow(flow: torch.Tensor, boxes: torch.Tensor, size) -> torch.Tensor:
    """``crop_resize`` for float flow ``(B, 2, T, H, W)``, with the vectors rescaled to the
    output grid: dx *= out_w / box_w, dy *= out_h / box_h."""
    oh, ow = (size, size) if isinstance(size, int) else size
    y = crop_resize(flow, boxes, (oh, ow))
    b = boxes.to(device=flow.device, dtype=flow.dtype)
    factor = torch.stack([ow / b[:, 2], oh / b[:, 3]], dim=1)  # (B, 2)
    return y * factor[:, :, None, None, None]


def _box_window(box, H: int, W: int) -> tuple[int, int, int, int]:
    """Rows ``[y0, y1)`` and columns ``[x0, x1)`` of every pixel ``crop_resize`` reads for
    ``box``: its samples lie strictly inside ``(x - 0.5, x + w - 0.5)`` and each reads its
    two neighbouring pixels. Where the window stops short of the frame no sample reaches
    its edge, so roi_align's edge clamping acts exactly where it does on the whole frame."""
    x, y, w, h = (float(v) for v in box)
    return (max(0, math.floor(y - 0.5)), min(H, math.floor(y + h - 0.5) + 2),
            max(0, math.floor(x - 0.5)), min(W, math.floor(x + w - 0.5) + 2))


def apply_boxes(batch: dict, boxes: torch.Tensor, size, bound: float = 20.0) -> dict:
    """Crop + resize rgb and flow with the same boxes (flow vectors rescaled as
    ``crop_resize_flow``).

    uint8 input is cut to each box's window (``_box_window``) while still uint8 and only
    that becomes float (rgb to [0, 1], flow dequantised with ``bound``, as ``to_float``):
    the same values as ``to_float`` then ``crop_resize`` on whole frames (up to float
    rounding of the shifted box), at a fraction of the conversion cost. Float input is
    cropped the same way, without conversion.
    """
    out = dict(batch)
    oh, ow = (size, size) if isinstance(size, int) else size
    for k in ("rgb", "flow"):
        if k not in batch:
            continue
        x = batch[k]
        B, C, T, H, W = x.shape
        y = torch.empty((B, C, T, oh, ow), device=x.device,
                        dtype=torch.float32 if x.dtype == torch.uint8 else x.dtype)
        for i, box in enumerate(boxes.tolist()):
            y0, y1, x0, x1 = _box_window(box, H, W)
            part = x[i:i + 1, :, :, y0:y1, x0:x1]
            if part.dtype == torch.uint8:
                part = to_float({k: part}, bound)[k]
            shifted = torch.tensor([[box[0] - x0, box[1] - y0, box[2], box[3]]])
            y[i:i + 1] = crop_resize(part, shifted, (oh, ow))
        if k == "flow":
            b = boxes.to(device=y.device, dtype=y.dtype)
            y *= torch.stack([ow / b[:, 2], oh / b[:, 3]], dim=1)[:, :, None, None, None]
        out[k] = y
    return out


# ----------------------------------------------------------------------------- flip / FRA

def hflip(batch: dict, mask: torch.Tensor, inplace: bool = False) -> dict:
    """Mirror the samples where ``mask`` (``(B,)`` bool) is set; their flow dx is negated.
    Only those samples are touched (none set: the tensors are returned as they are);
    ``inplace`` writes them into the batch's own tensors instead of copies."""
    out = dict(batch)
    m = mask.to(next(v.device for k, v in batch.items() if k in ("rgb", "flow")))
    idx = m.nonzero().flatten()
    if idx.numel() == 0:
        return out
    if "rgb" in batch:
        x = batch["rgb"] if inplace else batch["rgb"].clone()
        x[idx] = x[idx].flip(-1)
        out["rgb"] = x
    if "flow" in batch:
        f = batch["flow"] if inplace else batch["flow"].clone()
        sign = torch.tensor([-1.0, 1.0], device=f.device, dtype=f.dtype)
        f[idx] = f[idx].flip(-1) * sign[None, :, None, None, None]
        out["flow"] = f
    return out


def rotate_flow(flow: torch.Tensor, angle_deg: torch.Tensor | float,
                rotate_field: bool = True) -> torch.Tensor:
    """Rotate flow vectors (and optionally the field) by ``angle_deg`` per sample.

    (dx, dy) -> (dx cos a - dy sin a, dx sin a + dy cos a); clockwise on screen for a > 0
    because y points down. The field is rotated about the frame centre with bilinear
    sampling; regions rotated in from outside the frame are zero flow.

    Args:
        flow: float ``(B, 2, T, H, W)``.
        angle_deg: scalar or ``(B,)`` degrees.
        rotate_field: also move the vectors spatially (a rotated scene); ``False`` keeps the
            spatial layout, which is what MSCL's released FRA does.
    Returns:
        ``(B, 2, T, H, W)`` rotated flow.
    """
    B, _, T, H, W = flow.shape
    a = torch.as_tensor(angle_deg, dtype=flow.dtype, device=flow.device).reshape(-1)
    a = torch.deg2rad(a.expand(B))
    c, s = torch.cos(a), torch.sin(a)
    u, v = flow[:, 0], flow[:, 1]
    cb, sb = c[:, None, None, None], s[:, None, None, None]
    out = torch.stack([u * cb - v * sb, u * sb + v * cb], dim=1)
    if not rotate_field:
        return out
    # grid_sample maps output -> input positions, so it needs the inverse rotation R^-1,
    # expressed in normalised coordinates (x spans W pixels, y spans H pixels).
    theta = torch.zeros(B, 2, 3, dtype=flow.dtype, device=flow.device)
    theta[:, 0, 0], theta[:, 0, 1] = c, s * H / W
    theta[:, 1, 0], theta[:, 1, 1] = -s * W / H, c
    grid = F.affine_grid(theta, (B, 2 * T, H, W), align_corners=False)
    y = F.grid_sample(out.reshape(B, 2 * T, H, W), grid, mode="bilinear",
                      padding_mode="zeros", align_corners=False)
    return y.reshape(B, 2, T, H, W)


class FlowRotation:
    """MSCL's Flow Rotation Augmentation: angle k * 36 deg with k uniform in {1..8}.

    One angle per sample; pass the same ``k`` to both views of a pair (MSCL rotates q and k
    flows by the same angle). Call ``rot(flow, generator)`` -> ``(rotated, k)``.
    """

    def __init__(self, step_deg: float = 36.0, ks=tuple(range(1, 9)), rotate_field: bool = True):
        self.step_deg, self.ks, self.rotate_field = step_deg, tuple(ks), rotate_field

    def draw(self, n: int, generator=None, device="cpu") -> torch.Tensor:
        ks = torch.tensor(self.ks, device=device)
        return ks[(_rand((n,), generator, device) * len(ks)).long().clamp(max=len(ks) - 1)]

    def __call__(self, flow: torch.Tensor, generator=None, k: torch.Tensor | None = None):
        if k is None:
            k = self.draw(flow.shape[0], generator, flow.device)
        return rotate_flow(flow, k.to(flow.dtype) * self.step_deg, self.rotate_field), k


def max_magnitude_normalize(flow: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Divide each flow frame by its largest vector length (MSCL's per-frame normalisation)."""
    mag = flow.pow(2).sum(1, keepdim=True).sqrt()  # (B, 1, T, H, W)
    return flow / (mag.amax(dim=(-2, -1), keepdim=True) + eps)


# ----------------------------------------------------------------------------- colour (RGB)

def _gray(x: torch.Tensor) -> torch.Tensor:
    """Luma ``(B, 1, T, H, W)`` of rgb ``(B, 3, T, H, W)``."""
    w = torch.tensor(_GRAY, device=x.device, dtype=x.dtype)
    return (x * w[None, :, None, None, None]).sum(1, keepdim=True)


def _hue_shift(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate hue by ``shift`` (``(B,)``, fraction of a turn) via HSV; x in [0, 1].

    HSV -> RGB without branches: channel n is ``V - C * clamp(min(k, 4 - k), 0, 1)`` with
    ``k = (n + 6h) mod 6``, V the max and C the chroma (max - min), which a hue rotation
    keeps. One sample at a time, with in-place temporaries: the ~40 elementwise passes
    then stay in cache (about twice as fast on CPU as whole-batch temporaries).
    """
    out = torch.empty_like(x)
    for i, s6 in enumerate((shift * 6.0).tolist()):
        r, g, b = x[i].unbind(0)
        maxc = torch.maximum(torch.maximum(r, g), b)
        delta = maxc - torch.minimum(torch.minimum(r, g), b)
        inv = torch.where(delta > 0, delta, torch.ones_like(delta)).reciprocal_()
        h = torch.where(maxc == r, (g - b).mul_(inv),
                        torch.where(maxc == g, (b - r).mul_(inv).add_(2.0),
                                    (r - g).mul_(inv).add_(4.0)))
        h.add_(s6)  # 6h, rotated; grey pixels (delta 0) come out as V whatever h is
        for c, n in enumerate((5.0, 3.0, 1.0)):
            k = torch.remainder(h + n, 6.0)
            torch.minimum(k, 4.0 - k, out=k).clamp_(0.0, 1.0)
            torch.sub(maxc, k.mul_(delta), out=out[i, c])
    return out


def color_jitter(rgb: torch.Tensor, generator=None, brightness=0.4, contrast=0.4,
                 saturation=0.4, hue=0.1, p: float = 0.8) -> torch.Tensor:
    """ColorJitter on float rgb ``(B, 3, T, H, W)`` in [0, 1], one set of factors per clip.

    Factors ~ U[1-j, 1+j] (hue ~ U[-h, h]) applied to a sample with probability ``p``; the
    order of the four operations is one random permutation per call (torchvision draws it
    per image). Contrast blends towards the clip's mean luma, so all frames of a clip get
    the same transform.
    """
    B, device = rgb.shape[0], rgb.device
    on = _bernoulli(B, p, generator, device).to(rgb.dtype)

    def factor(j):
        f = _uniform((B,), max(0.0, 1 - j), 1 + j, generator, device)
        return (on * f + (1 - on))[:, None, None, None, None]

    fb, fc, fs = factor(brightness), factor(contrast), factor(saturation)
    fh = _uniform((B,), -hue, hue, generator, device) * on
    order = torch.argsort(_rand((4,), generator, "cpu")).tolist()
    # Samples left alone (factors 1, hue 0) would come out unchanged: skip them.
    idx = on.nonzero().flatten()
    if idx.numel() == 0:
        return rgb
    fb, fc, fs, fh = fb[idx], fc[idx], fs[idx], fh[idx]
    x = rgb[idx]
    for op in order:
        if op == 0 and brightness:
            x = (x * fb).clamp_(0, 1)
        elif op == 1 and contrast:
            mean = _gray(x).mean(dim=(1, 2, 3, 4), keepdim=True)
            x = (fc * x + (1 - fc) * mean).clamp_(0, 1)
        elif op == 2 and saturation:
            x = (fs * x + (1 - fs) * _gray(x)).clamp_(0, 1)
        elif op == 3 and hue:
            x = _hue_shift(x, fh)
    if idx.numel() == B:
        return x
    out = rgb.clone()
    out[idx] = x
    return out


def random_grayscale(rgb: torch.Tensor, generator=None, p: float = 0.2) -> torch.Tensor:
    """Replace a sample by its luma (3 equal channels) with probability ``p``."""
    m = _bernoulli(rgb.shape[0], p, generator, rgb.device)
    idx = m.nonzero().flatten()
    if idx.numel() == 0:
        return rgb
    out = rgb.clone()
    out[idx] = _gray(rgb[idx]).expand(-1, 3, -1, -1, -1)
    return out


def gaussian_blur(rgb: torch.Tensor, generator=None, sigma=(0.1, 2.0), p: float = 0.5,
                  radius: int | None = None) -> torch.Tensor:
    """Separable Gaussian blur with sigma ~ U(sigma) per clip, applied with probability ``p``.

    Kernel radius ``ceil(3 * sigma_max)`` (7 taps per side for sigma 2), reflect padding.
    """
    B, C, T, H, W = rgb.shape
    m = _bernoulli(B, p, generator, rgb.device)
    sig = _uniform((B,), sigma[0], sigma[1], generator, rgb.device)
    idx = m.nonzero().flatten()
    if idx.numel() == 0:
        return rgb
    r = radius if radius is not None else int(math.ceil(3 * sigma[1]))
    r = min(r, H - 1, W - 1)
    t = torch.arange(-r, r + 1, device=rgb.device, dtype=rgb.dtype)
    k = torch.exp(-0.5 * (t[None] / sig[idx, None]) ** 2)
    k = k / k.sum(1, keepdim=True)  # (n, 2r+1)
    n = idx.numel()
    kk = k.repeat_interleave(C * T, dim=0)  # one kernel per (sample, channel, frame) plane
    x = rgb[idx].reshape(1, n * C * T, H, W)
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), kk[:, None, :, None], groups=n * C * T)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), kk[:, None, None, :], groups=n * C * T)
    out = rgb.clone()
    out[idx] = x.reshape(n, C, T, H, W)
    return out


def normalize(batch: dict, mean=IMAGENET_MEAN, std=IMAGENET_STD, flow_scale: float = 1.0):
    """rgb -> (rgb - mean) / std per channel; flow -> flow / ``flow_scale``."""
    out = dict(batch)
    if "rgb" in batch:
        x = batch["rgb"]
        m = torch.tensor(mean, device=x.device, dtype=x.dtype)[None, :, None, None, None]
        s = torch.tensor(std, device=x.device, dtype=x.dtype)[None, :, None, None, None]
        out["rgb"] = (x - m) / s
    if "flow" in batch and flow_scale != 1.0:
        out["flow"] = batch["flow"] / flow_scale
    return out


# ----------------------------------------------------------------------------- motion map

def flow_motion_map(flow: torch.Tensor, grid=(7, 7), border_frac: float = 8 / 224):
    """Coarse per-clip motion map from float flow ``(B, 2, T, H, W)`` -> ``(B, gh, gw)``.

    Per frame and component, the Prewitt-gradient magnitude (motion boundaries), border
    zeroed, averaged over the clip's frames and block-averaged to ``grid``; u and v summed.
    An on-the-fly stand-in for the offline MCL maps (``motion_index``), used when the batch
    carries no ``motion_map``.
    """
    B, _, T, H, W = flow.shape
    x = flow.reshape(B * 2 * T, 1, H, W)
    kx = torch.tensor([[-1.0, 0, 1], [-1, 0, 1], [-1, 0, 1]], device=flow.device,
                      dtype=flow.dtype)
    k = torch.stack([kx, kx.t()])[:, None]  # (2, 1, 3, 3): d/dx, d/dy
    g = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k)
    mag = g.pow(2).sum(1).sqrt().reshape(B, 2, T, H, W)
    bh, bw = max(1, round(border_frac * H)), max(1, round(border_frac * W))
    mag[..., :bh, :] = 0
    mag[..., H - bh:, :] = 0
    mag[..., :, :bw] = 0
    mag[..., :, W - bw:] = 0
    m = mag.mean(2).sum(1)  # (B, H, W)
    return F.adaptive_avg_pool2d(m[:, None], grid)[:, 0]


# ----------------------------------------------------------------------------- pipeline

def split_views(batch: dict) -> list[dict]:
    """A collated ``ShardClipDataset`` batch (``rgb (B, V, 3, T, H, W)``, ``flow (B, V, 2, ...)``)
    -> V per-view dicts with ``(B, C, T, H, W)`` tensors; other keys are shared by reference."""
    keys = [k for k in ("rgb", "flow", "motion_map") if k in batch]
    ndim = {"rgb": 6, "flow": 6, "motion_map": 4}
    if not keys or batch[keys[0]].dim() != ndim[keys[0]]:
        return [batch]
    V = batch[keys[0]].shape[1]
    return [{**batch, **{k: batch[k][:, v] for k in keys}} for v in range(V)]


@dataclass
class AugmentCfg:
    """Everything a view's augmentation depends on.

    ``flip``: ``off`` | ``shared`` (both views of a pair flip together) | ``independent``.
    ``motion_crop``: MCL's motion-focused crop instead of the plain random resized crop.
    ``flow_scale``: flow is divided by this after cropping (e.g. the bound, for ~[-1, 1]).
    ``layout``: ``cthw`` for ``(B, C, T, H, W)`` input, or ``thwc`` for ``(B, T, H, W, C)``
    (frames as stored; the worker then skips a transposing copy and the device permutes).
    """
    size: int = 112
    layout: str = "cthw"
    train: bool = True
    bound: float = 20.0
    scale: tuple = (0.2, 1.0)
    ratio: tuple = (3 / 4, 4 / 3)
    flip: str = "off"
    flip_p: float = 0.5
    jitter: tuple = (0.4, 0.4, 0.4, 0.1)  # brightness, contrast, saturation, hue
    jitter_p: float = 0.8
    gray_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple = (0.1, 2.0)
    motion_crop: bool = False
    motion_top_frac: float = 0.1
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    flow_scale: float = 1.0

    def __post_init__(self):
        if self.flip not in FLIP_POLICIES:
            raise ValueError(f"flip policy {self.flip!r}; valid: {FLIP_POLICIES}")
        if self.layout not in ("cthw", "thwc"):
            raise ValueError(f"layout {self.layout!r}; valid: cthw, thwc")

    @classmethod
    def from_config(cls, cfg, train: bool = True, **overrides) -> "AugmentCfg":
        """From the project ``Config``: crop size, flip policy, flow bound, and the training
        augmentation's strengths from ``data.augment`` (e.g. ``{jitter_p: 0, scale: [0.5,
        1]}``; evaluation ignores them: it is a deterministic centre crop)."""
        kw = dict(size=cfg.clip.crop, train=train, bound=cfg.flow.bound, flip=cfg.data.flip)
        user = dict(getattr(cfg.data, "augment", {}) or {}) if train else {}
        valid = set(cls.__dataclass_fields__) - {"size", "train", "bound", "flip"}
        unknown = sorted(set(user) - valid)
        if unknown:
            raise KeyError(f"unknown data.augment key(s) {unknown}; valid: {sorted(valid)}")
        kw.update({k: tuple(v) if isinstance(v, list) else v for k, v in user.items()})
        kw.update(overrides)
        return cls(**kw)


class GPUAugment:
    """Per-view augmentation of a uint8 batch already on the device.

    ``aug(batch, generator, flip=None) -> dict`` with float32 ``rgb (B, 3, T, S, S)``,
    ``flow (B, 2, T, S, S)`` (output pixels / ``flow_scale``), the other keys unchanged, and
    ``aug_box (B, 4)`` / ``aug_flip (B,)`` recording what was done.

    Train: (motion-focused) random resized crop, flip by policy, colour jitter, grayscale,
    blur (rgb only), normalise. Eval (``train=False``): centre crop + normalise, no randomness.
    With ``flip="shared"`` the flip of a pair must be drawn once: pass ``flip=`` from
    ``draw_flip`` to each view, put a ``flip`` bool tensor in the batch, or use ``views``.
    """

    def __init__(self, cfg: AugmentCfg | dict | None = None, **overrides):
        if cfg is None:
            cfg = AugmentCfg(**overrides)
        elif isinstance(cfg, dict):
            cfg = AugmentCfg(**{**cfg, **overrides})
        elif overrides:
            cfg = AugmentCfg(**{**cfg.__dict__, **overrides})
        self.cfg = cfg

    def draw_flip(self, n: int, generator=None, device="cpu") -> torch.Tensor:
        if not self.cfg.train or self.cfg.flip == "off":
            return torch.zeros(n, dtype=torch.bool, device=device)
        return _bernoulli(n, self.cfg.flip_p, generator, device)

    def _resolve_flip(self, batch, n, generator, device, flip):
        c = self.cfg
        if not c.train or c.flip == "off":
            return torch.zeros(n, dtype=torch.bool, device=device)
        if flip is None and c.flip == "shared":
            flip = batch.get("flip")
            if flip is None:
                raise ValueError('flip="shared" needs one flip draw per pair: pass flip= from '
                                 "draw_flip(), a batch['flip'] bool tensor, or use views()")
        if flip is None:
            flip = _bernoulli(n, c.flip_p, generator, device)
        return torch.as_tensor(flip, dtype=torch.bool, device=device).reshape(n)

    def boxes(self, batch: dict, generator=None) -> torch.Tensor:
        """The crop boxes ``(B, 4)`` this view would use (uint8 or float batch)."""
        c = self.cfg
        B, H, W, device = _geometry(batch)
        if not c.train:
            return center_crop_boxes(B, H, W, c.size, device)
        if c.motion_crop:
            mm = batch.get("motion_map")
            if mm is None:
                if "flow" not in batch:
                    raise ValueError("motion_crop needs batch['motion_map'] or flow")
                mm = flow_motion_map(to_float({"flow": batch["flow"]}, c.bound)["flow"])
            return motion_focused_crop_boxes(mm.to(device).float(), H, W, generator,
                                             c.scale, c.ratio, c.motion_top_frac)
        return random_resized_crop_boxes(B, H, W, generator, device, c.scale, c.ratio)

    def __call__(self, batch: dict, generator: torch.Generator | None = None,
                 flip: torch.Tensor | None = None) -> dict:
        c = self.cfg
        if c.layout == "thwc":
            batch = channels_first(batch)
        B, H, W, device = _geometry(batch)
        boxes = self.boxes(batch, generator)
        x = apply_boxes(batch, boxes, c.size, c.bound)  # uint8 cut to the box, then float
        fl = self._resolve_flip(batch, B, generator, device, flip)
        if c.train:
            x = hflip(x, fl, inplace=True)  # x is apply_boxes' fresh output
            if "rgb" in x:
                rgb = x["rgb"]
                if c.jitter_p > 0:
                    rgb = color_jitter(rgb, generator, *c.jitter, p=c.jitter_p)
                if c.gray_p > 0:
                    rgb = random_grayscale(rgb, generator, c.gray_p)
                if c.blur_p > 0:
                    rgb = gaussian_blur(rgb, generator, c.blur_sigma, c.blur_p)
                x["rgb"] = rgb
        x = normalize(x, c.mean, c.std, c.flow_scale)
        x.pop("motion_map", None)
        x["aug_box"], x["aug_flip"] = boxes, fl
        return x

    def views(self, batches: list[dict], generator=None) -> list[dict]:
        """Augment the views of one batch of pairs/tuples, honouring the flip policy."""
        B, _, _, device = _geometry(batches[0])
        shared = self.draw_flip(B, generator, device) if self.cfg.flip == "shared" else None
        return [self(b, generator, flip=shared) for b in batches]
