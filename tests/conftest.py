"""Shared fixtures: small real videos encoded with ffmpeg, and a finished tiny flow stage."""
from __future__ import annotations

import numpy as np
import pytest

from motionclr.config import load_config
from motionclr.datasets.synthetic import encode_video, generate


def tiny_overrides(root, cache, **extra) -> list[str]:
    """A config for a 16-video synthetic set at 32 px short side (seconds, not minutes)."""
    over = {"data.dataset": "synthetic", "data.root": str(root), "data.cache": str(cache),
            "decode.short_side": 32, "pipeline.workers": 1, "clip.clip_len": 4,
            "clip.stride": 1, "clip.crop": 32, "model.backbone": "small3d", "model.width": 4,
            "model.dim": 16, "method.queue_size": 32, "train.batch_size": 4,
            "train.epochs": 1, "train.num_workers": 0, "train.optimizer": "adam",
            "train.lr": 0.05, "train.warmup_epochs": 0, "eval.num_clips": 2,
            "eval.batch_size": 4, **extra}
    return [f"{k}={v}" for k, v in over.items()]


def manifest_digests(stage) -> dict:
    """video_id -> content digest of a finished flow stage (outputs compared by content)."""
    import json
    man = json.loads((stage / "manifest.json").read_text())
    return {v["video_id"]: v["content_blake2b"] for v in man["videos"]}


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors on a shared 2-core box: intra-op threads only add synchronisation stalls."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    """16 encoded videos (8 classes x 2 groups, group 1 = test), 12 frames of 64x48."""
    return generate(tmp_path_factory.mktemp("syn"), groups=2, clips=1, n_frames=12,
                    size=(64, 48), seed=0)


@pytest.fixture(scope="session")
def tiny_stage(tiny_root, tmp_path_factory):
    from motionclr.pipeline.flow_stage import run_flow_stage
    cache = tmp_path_factory.mktemp("cache")
    cfg = load_config(None, tiny_overrides(tiny_root, cache))
    return cfg, run_flow_stage(cfg, progress=False)


@pytest.fixture
def moving_square_video(tmp_path):
    """An encoded .avi of a textured square moving +2 px/frame in x; returns (path, frames)."""
    import cv2
    rng = np.random.default_rng(0)
    # Smooth texture: per-pixel colour noise would not survive 4:2:0 chroma subsampling.
    bg = cv2.GaussianBlur(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), (7, 7), 2.0)
    frames = np.stack([np.roll(bg, 2 * t, axis=1) for t in range(10)])
    path = tmp_path / "shift.avi"
    encode_video(frames, path)
    return path, frames
