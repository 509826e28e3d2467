"""OpenCV CPU flow estimators: TV-L1 (contrib ``optflow``), Farneback and DIS.

Every estimator takes uint8 RGB frames ``(T, H, W, 3)`` and returns float32 ``(T-1, H, W, 2)``
where ``flow[i]`` maps frame i to frame i+1 as (dx, dy) in pixels. Flow is computed on
grayscale frames, as in TSN/I3D/CoCLR preprocessing.
"""
from __future__ import annotations

import cv2
import numpy as np

# cv2.optflow.DualTVL1OpticalFlow_create defaults (opencv_contrib 4.x); every one is settable.
TVL1_DEFAULTS = dict(
    tau=0.25, lambda_=0.15, theta=0.3, nscales=5, warps=5, epsilon=0.01,
    innnerIterations=30, outerIterations=10, scaleStep=0.8, gamma=0.0,
    medianFiltering=5, useInitialFlow=False,
)
FARNEBACK_DEFAULTS = dict(
    pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0,
)
DIS_DEFAULTS = dict(preset="medium")


def _gray(frames: np.ndarray) -> list[np.ndarray]:
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames (T,H,W,3), got {frames.dtype} {frames.shape}")
    return [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]


def _check_params(params: dict, defaults: dict, method: str) -> dict:
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ValueError(f"unknown {method} parameter(s) {unknown}; valid: {sorted(defaults)}")
    return {**defaults, **params}


def _pairs(gray: list[np.ndarray], fn) -> np.ndarray:
    h, w = gray[0].shape
    out = np.empty((max(len(gray) - 1, 0), h, w, 2), np.float32)
    for i in range(len(gray) - 1):
        out[i] = fn(gray[i], gray[i + 1])
    return out


def make_tvl1(**params):
    p = _check_params(params, TVL1_DEFAULTS, "tvl1")
    if not hasattr(cv2, "optflow"):
        from motionclr.envcheck import opencv_advice
        raise ImportError("cv2.optflow is missing: install opencv-contrib-python(-headless), "
                          "not plain opencv-python. " + (opencv_advice() or ""))
    return cv2.optflow.DualTVL1OpticalFlow_create(
        tau=p["tau"], lambda_=p["lambda_"], theta=p["theta"], nscales=int(p["nscales"]),
        warps=int(p["warps"]), epsilon=p["epsilon"], innnerIterations=int(p["innnerIterations"]),
        outerIterations=int(p["outerIterations"]), scaleStep=p["scaleStep"], gamma=p["gamma"],
        medianFiltering=int(p["medianFiltering"]), useInitialFlow=bool(p["useInitialFlow"]))


def tvl1(frames: np.ndarray, device: str = "cpu", **params) -> np.ndarray:
    """OpenCV Dual TV-L1 (Zach-Pock-Bischof / Sanchez et al.) with OpenCV's defaults."""
    algo = make_tvl1(**params)
    return _pairs(_gray(frames), lambda a, b: algo.calc(a, b, None))


def farneback(frames: np.ndarray, device: str = "cpu", **params) -> np.ndarray:
    """OpenCV Farneback polynomial-expansion flow."""
    p = _check_params(params, FARNEBACK_DEFAULTS, "farneback")
    return _pairs(_gray(frames), lambda a, b: cv2.calcOpticalFlowFarneback(
        a, b, None, p["pyr_scale"], int(p["levels"]), int(p["winsize"]), int(p["iterations"]),
        int(p["poly_n"]), p["poly_sigma"], int(p["flags"])))


def dis(frames: np.ndarray, device: str = "cpu", **params) -> np.ndarray:
    """OpenCV DIS (dense inverse search) flow; presets ultrafast / fast / medium."""
    p = _check_params(params, DIS_DEFAULTS, "dis")
    presets = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
               "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
    if p["preset"] not in presets:
        raise ValueError(f"unknown dis preset {p['preset']!r}; valid: {sorted(presets)}")
    algo = cv2.DISOpticalFlow_create(presets[p["preset"]])
    return _pairs(_gray(frames), lambda a, b: algo.calc(a, b, None))
