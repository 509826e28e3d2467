"""Batched TV-L1 optical flow in PyTorch tensor ops (CPU or CUDA, fp32 state).

Model and discretisation follow OpenCV's CPU ``DualTVL1OpticalFlow`` (Zach-Pock-Bischof 2007,
Sanchez et al. 2013), written from the algorithm's description (design notes and parity
numbers in ``docs/flow.md``):

* intensities on the 0..255 scale (uint8 used as is), no pre-smoothing;
* pyramid by bilinear ``cv::resize`` semantics (``scale_step`` 0.8, sizes rounded, coarsest side
  >= 16 px), flow upsampled bilinearly and multiplied by ``1/scale_step``;
* per warp: bicubic (a=-0.75) warp of I1 and of its centred gradient (computed once per scale
  on the unwarped I1), zero outside the image (OpenCV 4's ``remap`` rounded sample positions to
  1/32 px, OpenCV 5's does not; ``quantize_coords`` selects);
* per iteration: thresholding -> backward-difference divergence -> u update -> forward-difference
  gradient -> Chambolle dual step; dual variables reset at each scale;
* ``outer_iterations`` x ``inner_iterations`` per warp, each outer iteration starting with a 5x5
  median of u; a pair stops iterating within a warp once the summed squared update of u is
  <= epsilon^2 * H * W.

Batching: all pairs of a batch share H, W. The per-pair stop rule is applied on the device by
freezing converged pairs (``torch.where``), so a batch gives the same answer as single pairs;
the host only asks "is any pair still running?" every ``check_every`` iterations (one sync per
check for the whole batch, never per pair). The ``fast`` preset runs a fixed budget with no
syncs at all.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

# OpenCV's cv::optflow::DualTVL1OpticalFlow_create defaults plus the implementation choices
# that make the torch port reproduce it (see module docstring).
OPENCV_PRESET = dict(
    tau=0.25, lambda_=0.15, theta=0.3, nscales=5, warps=5, epsilon=0.01,
    inner_iterations=30, outer_iterations=10, scale_step=0.8, gamma=0.0, median=5,
    interpolation="bicubic", quantize_coords=False, pyramid="opencv", stop=True,
    check_every=10, min_size=16, compile=False, compact=True,
)
# Cheaper variant, tuned on the motion-type suite (docs/flow.md): a 0.65 pyramid of 6 levels
# with anti-aliased downsampling (1.7x the finest level's cost instead of OpenCV's 2.8x, and
# a larger capture range), a fixed budget of 2 warps x 30 iterations per level, no median,
# no stop rule, so no host sync at all.
FAST_PRESET = dict(
    OPENCV_PRESET, scale_step=0.65, nscales=6, warps=2, inner_iterations=30, outer_iterations=1,
    median=0, interpolation="bicubic", pyramid="antialias", stop=False,
)
PRESETS = {"opencv": OPENCV_PRESET, "fast": FAST_PRESET}

# OpenCV spellings accepted as aliases, so a config written for ``tvl1`` works here too.
_ALIASES = {"innnerIterations": "inner_iterations", "outerIterations": "outer_iterations",
            "scaleStep": "scale_step", "medianFiltering": "median"}

_FLT_EPSILON = float(np.finfo(np.float32).eps)  # OpenCV's "no gradient" threshold on |grad I|^2


def resolve_params(preset: str = "opencv", **params) -> dict:
    """Preset defaults overridden by ``params``; unknown names raise ValueError."""
    if preset not in PRESETS:
        raise ValueError(f"unknown tvl1_torch preset {preset!r}; valid: {sorted(PRESETS)}")
    cfg = dict(PRESETS[preset])
    for name, value in params.items():
        name = _ALIASES.get(name, name)
        if name not in cfg:
            raise ValueError(f"unknown tvl1_torch parameter {name!r}; valid: "
                             f"{sorted(cfg) + sorted(_ALIASES)}")
        cfg[name] = value
    if cfg["gamma"] != 0:
        raise ValueError("tvl1_torch supports gamma=0 only (no illumination term)")
    if cfg["interpolation"] not in ("bicubic", "bilinear"):
        raise ValueError(f"interpolation must be 'bicubic' or 'bilinear', "
                         f"got {cfg['interpolation']!r}")
    if cfg["pyramid"] not in ("opencv", "antialias"):
        raise ValueError(f"pyramid must be 'opencv' or 'antialias', got {cfg['pyramid']!r}")
    if cfg["median"] not in (0, 1, 3, 5):
        raise ValueError(f"median must be 0/1 (off), 3 or 5, got {cfg['median']!r}")
    if not 0 < cfg["scale_step"] < 1:
        raise ValueError(f"scale_step must be in (0, 1), got {cfg['scale_step']}")
    return cfg


def rgb_to_gray(frames: torch.Tensor) -> torch.Tensor:
    """cv2.COLOR_RGB2GRAY on uint8, bit-exact with OpenCV 5 (16-bit fixed-point weights).

    0.299/0.587/0.114 scaled to 2^16 (sum exactly 65536) with round-half-up; checked against
    cv2.cvtColor on all 2^24 colours (OpenCV 4's 14-bit weights differ on ~1% of colours).

    Args:
        frames: uint8 ``(..., 3)`` RGB tensor.
    Returns:
        float32 ``(...)`` on the 0..255 scale (integer values), same device.
    """
    x = frames.to(torch.int32)
    y = (x[..., 0] * 19596 + x[..., 1] * 38470 + x[..., 2] * 7470 + (1 << 15)) >> 16
    return y.to(torch.float32)


# ---------------------------------------------------------------------------------------------
# pyramid helpers


def _linear_taps(n_out: int, n_in: int, scale: float, device) -> tuple:
    """Source indices and weights of cv::resize INTER_LINEAR along one axis.

    OpenCV maps dst x to src ``(x + 0.5) * scale - 0.5`` and clamps outside samples to the edge
    pixel (weight 0 on the second tap), which is what we reproduce.
    """
    f = (torch.arange(n_out, dtype=torch.float64) + 0.5) * scale - 0.5
    i0 = torch.floor(f)
    w = f - i0
    low = i0 < 0
    high = i0 >= n_in - 1
    w[low | high] = 0.0
    i0[low] = 0
    i0[high] = n_in - 1
    i0 = i0.long()
    i1 = torch.clamp(i0 + 1, max=n_in - 1)
    w = w.to(torch.float32)
    return i0.to(device), i1.to(device), w.to(device)


def resize_linear(x: torch.Tensor, size: tuple[int, int],
                  scale: tuple[float, float]) -> torch.Tensor:
    """Bilinear resize with cv::resize semantics (explicit src-per-dst ``scale``).

    torch's ``interpolate`` derives the scale from the sizes; OpenCV's ``resize(fx=0.8)`` uses
    0.8 exactly while rounding the size, so the two differ by up to ~0.5 px at the far edge.

    Args:
        x: ``(B, C, h, w)`` float tensor.
        size: output ``(H, W)``.
        scale: source pixels per destination pixel ``(sy, sx)``.
    Returns:
        ``(B, C, H, W)``.
    """
    y0, y1, wy = _linear_taps(size[0], x.shape[-2], scale[0], x.device)
    x0, x1, wx = _linear_taps(size[1], x.shape[-1], scale[1], x.device)
    # horizontal pass first, then vertical, as OpenCV does
    h = x.index_select(-1, x0) * (1 - wx) + x.index_select(-1, x1) * wx
    wy = wy[:, None]
    return h.index_select(-2, y0) * (1 - wy) + h.index_select(-2, y1) * wy


def _level_sizes(h: int, w: int, cfg: dict) -> list[tuple[int, int]]:
    """Pyramid sizes, finest first; stops before a side would drop below ``min_size``."""
    sizes = [(h, w)]
    for _ in range(1, int(cfg["nscales"])):
        ph, pw = sizes[-1]
        nh, nw = round(ph * cfg["scale_step"]), round(pw * cfg["scale_step"])
        if nh < cfg["min_size"] or nw < cfg["min_size"]:
            break
        sizes.append((nh, nw))
    return sizes


def _build_pyramid(img: torch.Tensor, sizes, cfg: dict) -> list[torch.Tensor]:
    """``(B, C, H, W)`` -> list of levels, finest first, each made from the previous one."""
    levels = [img]
    s = cfg["scale_step"]
    for size in sizes[1:]:
        if cfg["pyramid"] == "opencv":
            levels.append(resize_linear(levels[-1], size, (1 / s, 1 / s)))
        else:
            levels.append(F.interpolate(levels[-1], size=size, mode="bilinear",
                                        align_corners=False, antialias=True))
    return levels


def _upsample_flow(u: torch.Tensor, size: tuple[int, int], cfg: dict) -> torch.Tensor:
    """Coarse flow ``(B, 2, h, w)`` -> next level, times ``1/scale_step`` as OpenCV does."""
    h, w = u.shape[-2:]
    up = resize_linear(u, size, (h / size[0], w / size[1]))
    return up * (1.0 / cfg["scale_step"])


# ---------------------------------------------------------------------------------------------
# finite differences and filters


def centered_gradient(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centred differences, one-sided halves at the borders (= replicate padding).

    Args:
        img: ``(B, 1, H, W)``.
    Returns:
        ``(gx, gy)``, each ``(B, 1, H, W)``.
    """
    p = F.pad(img, (1, 1, 1, 1), mode="replicate")
    gx = 0.5 * (p[..., 1:-1, 2:] - p[..., 1:-1, :-2])
    gy = 0.5 * (p[..., 2:, 1:-1] - p[..., :-2, 1:-1])
    return gx, gy


def _odd_even_merge_comparators(n: int) -> list[tuple[int, int]]:
    """Batcher's odd-even merge sort network for n inputs (padded to 2^k, pads dropped)."""
    size = 1
    while size < n:
        size *= 2
    comps = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        comps.append((i + j, i + j + k))
            k //= 2
        p *= 2
    # a missing input acts as +inf: it never moves, so comparators touching it are no-ops
    return [(a, b) for a, b in comps if b < n]


@functools.lru_cache(maxsize=None)
def _median_network(n: int) -> tuple:
    """Comparators of a sorting network pruned to what output n // 2 (the median) needs.

    Each entry is (a, b, need_min, need_max): after it, slot a holds min and slot b max, and
    only the needed half is computed. n = 25 -> 113 comparators, 202 min/max ops.
    """
    need, kept = {n // 2}, []
    for a, b in reversed(_odd_even_merge_comparators(n)):
        if a in need or b in need:
            kept.append((a, b, a in need, b in need))
            need |= {a, b}
    return tuple(reversed(kept))


def median_filter(u: torch.Tensor, k: int) -> torch.Tensor:
    """Exact k x k median with replicated borders (cv::medianBlur), ``(B, C, H, W)`` -> same.

    Uses a min/max selection network over the k*k shifted views: elementwise ops only, so it is
    ~10x faster than ``unfold(...).median()`` on CPU and fuses well on GPU.
    """
    h, w = u.shape[-2:]
    r = k // 2
    padded = F.pad(u, (r, r, r, r), mode="replicate")
    v = [padded[..., i:i + h, j:j + w] for i in range(k) for j in range(k)]
    for a, b, need_min, need_max in _median_network(k * k):
        lo = torch.minimum(v[a], v[b]) if need_min else None
        hi = torch.maximum(v[a], v[b]) if need_max else None
        v[a], v[b] = lo, hi
    return v[(k * k) // 2].contiguous()


def _step(u, px, py, g, rho_c, neg_grad, l_t: float, theta: float, taut: float,
          with_error: bool = True):
    """One TV-L1 iteration for the whole batch (pure tensor function, compilable).

    Written with fused/in-place ops (addcmul, clamp_, slice updates): on CPU eager every op
    is a full memory pass, and this halves the passes of the textbook form.

    Args:
        u, px, py: ``(B, 2, H, W)`` flow and the x / y dual components for each flow channel.
        g: ``(B, 2, H, W)`` warped image gradient (I1wx, I1wy).
        rho_c: ``(B, 1, H, W)`` constant part of the linearised residual.
        neg_grad: ``(B, 1, H, W)`` -|g|^2, or +inf where |g|^2 <= FLT_EPSILON.
    Returns:
        ``(u_new, px_new, py_new, err)`` with err ``(B,)`` the summed squared change of u
        (None unless ``with_error``: the fixed-budget preset does not need the reduction).
    """
    rho = torch.addcmul(rho_c, g[:, 0:1], u[:, 0:1]).addcmul_(g[:, 1:2], u[:, 1:2])
    # Thresholding: the step along g is -rho/|g|^2, limited to +-lambda*theta. This is
    # OpenCV's three regimes (rho < -l_t|g|^2 -> +l_t, rho > l_t|g|^2 -> -l_t, else -rho/|g|^2)
    # in one clamp; where |g|^2 ~ 0 the step is 0 (OpenCV: +-l_t*g with |g| < 4e-4).
    coef = (rho / neg_grad).clamp_(-l_t, l_t)
    # divergence: backward differences with p[-1] = 0 (negative adjoint of forward gradient)
    div = px + py
    div[..., 1:] -= px[..., :-1]
    div[..., 1:, :] -= py[..., :-1, :]
    u_new = torch.addcmul(u, coef, g).add_(div, alpha=theta)
    err = (u_new - u).square_().sum(dim=(1, 2, 3)) if with_error else None
    # forward differences, zero in the last column / row
    ux = torch.empty_like(u_new)
    torch.sub(u_new[..., 1:], u_new[..., :-1], out=ux[..., :-1])
    ux[..., -1] = 0
    uy = torch.empty_like(u_new)
    torch.sub(u_new[..., 1:, :], u_new[..., :-1, :], out=uy[..., :-1, :])
    uy[..., -1, :] = 0
    ng = torch.addcmul(ux * ux, uy, uy).sqrt_().mul_(taut).add_(1.0)
    px_new = torch.add(px, ux, alpha=taut).div_(ng)
    py_new = torch.add(py, uy, alpha=taut).div_(ng)
    return u_new, px_new, py_new, err


_COMPILED = {}


def _get_step(use_compile: bool):
    """The iteration function, optionally through torch.compile (cached; off by default)."""
    if not use_compile:
        return _step
    if "step" not in _COMPILED:
        _COMPILED["step"] = torch.compile(_step)
    return _COMPILED["step"]


# ---------------------------------------------------------------------------------------------
# solver


def _cubic_weights(t: torch.Tensor) -> list[torch.Tensor]:
    """Keys cubic weights (a = -0.75, OpenCV's INTER_CUBIC) for taps -1..2 at offset t in [0,1)."""
    a = -0.75
    t1 = t + 1
    w0 = ((a * t1 - 5 * a) * t1 + 8 * a) * t1 - 4 * a
    w1 = ((a + 2) * t - (a + 3)) * t * t + 1
    s = 1 - t
    w2 = ((a + 2) * s - (a + 3)) * s * s + 1
    return [w0, w1, w2, 1 - w0 - w1 - w2]


def remap(stack: torch.Tensor, x: torch.Tensor, y: torch.Tensor, mode: str = "bicubic",
          quantize: bool = False) -> torch.Tensor:
    """cv::remap with float maps and BORDER_CONSTANT 0, batched.

    Taps outside the image count as 0 (as in OpenCV and IPOL, so the data term switches off
    there). Written as explicit gathers rather than ``grid_sample``: grid_sample's bicubic is
    not exact at integer positions (identical frames gave up to 0.15 px of flow with the fast
    preset) and differs from OpenCV's by ~1e-3 grey levels.
    OpenCV 5 samples at the exact float position (verified: max diff 3e-4 grey levels);
    OpenCV 4 rounded positions to 1/32 px, which ``quantize=True`` reproduces.

    Args:
        stack: ``(B, C, H, W)`` images.
        x, y: ``(B, H, W)`` sample positions in pixels.
        mode: "bicubic" (Keys a=-0.75, OpenCV INTER_CUBIC) or "bilinear".
        quantize: round positions to 1/32 px first.
    Returns:
        ``(B, C, H, W)``.
    """
    b, c, h, w = stack.shape
    if quantize:
        x, y = torch.round(x * 32) / 32, torch.round(y * 32) / 32
    ix, iy = torch.floor(x), torch.floor(y)
    if mode == "bicubic":
        wx, wy, offsets = _cubic_weights(x - ix), _cubic_weights(y - iy), (-1, 0, 1, 2)
    else:
        tx, ty = x - ix, y - iy
        wx, wy, offsets = [1 - tx, tx], [1 - ty, ty], (0, 1)
    # A zero frame of width r around the image, with indices clamped into it, makes every tap
    # outside the image read 0 without per-tap masks (even for positions far outside).
    r = max(-offsets[0], offsets[-1])
    hp, wp = h + 2 * r, w + 2 * r
    flat = F.pad(stack, (r, r, r, r)).reshape(b, c, hp * wp)
    cols = [(ix.long() + (ox + r)).clamp_(0, wp - 1) for ox in offsets]
    out = None
    for j, oy in enumerate(offsets):
        rows = (iy.long() + (oy + r)).clamp_(0, hp - 1) * wp
        row = None
        for i in range(len(offsets)):
            idx = (rows + cols[i]).reshape(b, 1, h * w).expand(b, c, h * w)
            term = flat.gather(2, idx).reshape(b, c, h, w) * wx[i][:, None]
            row = term if row is None else row + term
        out = row * wy[j][:, None] if out is None else out + row * wy[j][:, None]
    return out


def _solve_level(I0, I1, u, cfg: dict, step) -> torch.Tensor:
    """All warps at one pyramid level. I0, I1 ``(B, 1, H, W)``; u ``(B, 2, H, W)`` initial flow."""
    b, _, h, w = I0.shape
    dev = I0.device
    l_t = float(cfg["lambda_"] * cfg["theta"])
    theta = float(cfg["theta"])
    taut = float(cfg["tau"] / cfg["theta"])
    inner, outer = int(cfg["inner_iterations"]), int(cfg["outer_iterations"])
    median = int(cfg["median"])
    stop = bool(cfg["stop"])
    check_every = max(int(cfg["check_every"]), 1)
    # OpenCV keeps the error and threshold in float32
    scaled_eps = float(np.float32(cfg["epsilon"] ** 2 * h * w))

    I1x, I1y = centered_gradient(I1)
    stack = torch.cat((I1, I1x, I1y), dim=1)
    base_x = torch.arange(w, device=dev, dtype=torch.float32).view(1, 1, w)
    base_y = torch.arange(h, device=dev, dtype=torch.float32).view(1, h, 1)
    mode, quantize = cfg["interpolation"], bool(cfg["quantize_coords"])
    px = torch.zeros_like(u)
    py = torch.zeros_like(u)
    for _ in range(int(cfg["warps"])):
        warped = remap(stack, base_x + u[:, 0], base_y + u[:, 1], mode, quantize)
        I1w, g = warped[:, 0:1], warped[:, 1:3]
        grad = g.square().sum(dim=1, keepdim=True)
        rho_c = I1w - g[:, 0:1] * u[:, 0:1] - g[:, 1:2] * u[:, 1:2] - I0
        has_grad = grad > _FLT_EPSILON
        neg_grad = torch.where(has_grad, -grad, float("inf"))  # rho / inf = 0: no step
        active = torch.ones(b, dtype=torch.bool, device=dev)  # per pair, on the device
        # Working set: the rows still iterating. At each check, pairs that have stopped are
        # written back and dropped from it, so a batch costs about what its pairs cost one by
        # one instead of its slowest pair's time for every pair (same results: per-pair ops).
        rows = None  # indices into the batch (None: all rows, in order)
        uw, pxw, pyw, gw, rcw, ngw = u, px, py, g, rho_c, neg_grad
        for n in range(outer * inner):
            m = active.view(-1, 1, 1, 1)
            if n % inner == 0 and median > 1:
                med = median_filter(uw, median)
                uw = torch.where(m, med, uw) if stop else med
            u_new, px_new, py_new, err = step(uw, pxw, pyw, gw, rcw, ngw, l_t, theta, taut, stop)
            if stop:
                # freeze pairs that had already converged; the iteration that crosses the
                # threshold is still applied in full (as in OpenCV)
                uw = torch.where(m, u_new, uw)
                pxw = torch.where(m, px_new, pxw)
                pyw = torch.where(m, py_new, pyw)
                active = active & (err > scaled_eps)
                if (n + 1) % check_every == 0:
                    n_active = int(active.sum())  # the one host sync per check, whole batch
                    if n_active == 0:
                        break
                    if cfg["compact"] and n_active < len(active):
                        if rows is None:
                            rows = torch.arange(b, device=dev)
                            u, px, py = u.clone(), px.clone(), py.clone()
                        done = ~active
                        u[rows[done]], px[rows[done]], py[rows[done]] = \
                            uw[done], pxw[done], pyw[done]
                        keep = active.nonzero().squeeze(1)
                        rows = rows[keep]
                        uw, pxw, pyw, gw, rcw, ngw = (t[keep] for t in
                                                      (uw, pxw, pyw, gw, rcw, ngw))
                        active = active[keep]
            else:
                uw, pxw, pyw = u_new, px_new, py_new
        if rows is None:
            u, px, py = uw, pxw, pyw
        else:
            u[rows], px[rows], py[rows] = uw, pxw, pyw
    return u


def tvl1_pairs(I0: torch.Tensor, I1: torch.Tensor, preset: str = "opencv",
               **params) -> torch.Tensor:
    """TV-L1 flow for a batch of grayscale pairs (the building block for cross-video batching).

    Args:
        I0: ``(N, H, W)`` first frames, intensities on the 0..255 scale (uint8 or float32; the
            state is always float32 on ``I0.device``).
        I1: ``(N, H, W)`` second frames, same scale, shape and device.
        preset: "opencv" or "fast"; ``params`` override single settings (see ``PRESETS``).
    Returns:
        float32 ``(N, H, W, 2)`` flow (dx, dy) mapping I0 to I1, on ``I0.device``.
    """
    cfg = resolve_params(preset, **params)
    if I0.shape != I1.shape or I0.dim() != 3:
        raise ValueError(f"expected two (N,H,W) tensors of the same shape, got "
                         f"{tuple(I0.shape)} and {tuple(I1.shape)}")
    n, h, w = I0.shape
    if n == 0:
        return torch.zeros((0, h, w, 2), dtype=torch.float32, device=I0.device)
    step = _get_step(bool(cfg["compile"]))
    with torch.no_grad():
        I0 = I0.to(torch.float32)[:, None]
        I1 = I1.to(torch.float32, copy=False).to(I0.device)[:, None]
        sizes = _level_sizes(h, w, cfg)
        pyr0 = _build_pyramid(I0, sizes, cfg)
        pyr1 = _build_pyramid(I1, sizes, cfg)
        u = torch.zeros((n, 2) + sizes[-1], dtype=torch.float32, device=I0.device)
        for level in range(len(sizes) - 1, -1, -1):
            u = _solve_level(pyr0[level], pyr1[level], u, cfg, step)
            if level > 0:
                u = _upsample_flow(u, sizes[level - 1], cfg)
        return u.permute(0, 2, 3, 1).contiguous()


def tvl1_torch(frames, device: str = "cpu", preset: str = "opencv", batch_size: int = 16,
               **params):
    """TV-L1 flow between consecutive frames, batched over pairs.

    Args:
        frames: uint8 RGB ``(T, H, W, 3)``, numpy array or torch tensor.
        device: torch device to compute on ("cpu", "cuda", ...).
        preset: "opencv" (parity with cv2.optflow TV-L1) or "fast".
        batch_size: pairs per batch (memory scales linearly; ~60 MB per 340x256 pair with the
            opencv preset on CPU).
        **params: overrides of the preset (``resolve_params``); unknown names raise ValueError.
    Returns:
        float32 ``(T-1, H, W, 2)`` flow (dx, dy), numpy for numpy input; for tensor input a
        tensor on ``device``.
    """
    resolve_params(preset, **params)  # validate before any work
    is_numpy = isinstance(frames, np.ndarray)
    x = torch.from_numpy(frames) if is_numpy else frames
    if not torch.is_tensor(x) or x.dim() != 4 or x.shape[-1] != 3 or x.dtype != torch.uint8:
        raise ValueError(f"expected uint8 frames (T,H,W,3), got "
                         f"{getattr(x, 'dtype', type(x))} {tuple(getattr(x, 'shape', ()))}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    t, h, w, _ = x.shape
    gray = rgb_to_gray(x.to(device))
    out = torch.empty((max(t - 1, 0), h, w, 2), dtype=torch.float32, device=gray.device)
    for s in range(0, t - 1, batch_size):
        e = min(s + batch_size, t - 1)
        out[s:e] = tvl1_pairs(gray[s:e], gray[s + 1:e + 1], preset=preset, **params)
    return out.cpu().numpy() if is_numpy else out


__all__ = ["tvl1_torch", "tvl1_pairs", "rgb_to_gray", "resolve_params", "PRESETS",
           "resize_linear", "median_filter", "centered_gradient"]
