"""Loading a pretraining run for evaluation."""
from __future__ import annotations

from pathlib import Path

import torch

from motionclr.config import Config, config_from_dict, load_config


def load_run(run: str | Path, overrides: list[str] | None = None,
             device: str = "cpu") -> tuple[Config, torch.nn.Module, dict]:
    """(config, method with trained weights in eval mode, checkpoint metadata).

    The run's saved config is the base; ``overrides`` (e.g. ``eval.num_clips=5``) apply on
    top. Checkpoints are loaded with ``weights_only=True``: a file that is not a motionclr
    checkpoint is refused with a clear error instead of being unpickled.
    """
    from motionclr.train.methods import build_method
    run = Path(run)
    ckpt_path = run / "checkpoint.pt"
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"no checkpoint.pt in {run}: pretrain first (make pretrain)")
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means: not ours
        raise ValueError(f"{ckpt_path} is not a motionclr checkpoint ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''})") from e
    if not isinstance(ckpt, dict) or "motionclr_checkpoint" not in ckpt:
        raise ValueError(f"{ckpt_path} is not a motionclr checkpoint (no motionclr marker)")
    cfg = config_from_dict(ckpt["config"])
    if (run / "config.yaml").is_file():
        cfg = load_config([run / "config.yaml"], overrides)
    elif overrides:
        cfg = load_config(None, overrides)  # pragma: no cover - configs are always saved
    model = build_method(cfg)
    model.load_state_dict(ckpt["model"])
    model.to(device).eval()
    return cfg, model, {"epoch": ckpt["epoch"], "stage": ckpt.get("stage"),
                        "checkpoint": str(ckpt_path),
                        "checkpoint_mtime": ckpt_path.stat().st_mtime}
