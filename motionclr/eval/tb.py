"""Evaluation results into the run's TensorBoard (``<run>/tb``), beside the training curves.

Scalars ``eval/<protocol>/<metric>`` are written at the step of the checkpoint's last
training iteration, so they line up with ``train/*`` and survive a later resume (which
purges only events from the step after the checkpoint on). The run's config goes into
the HParams tab as one session per protocol (``tb/hparams-<protocol>``) with the metrics.
"""
from __future__ import annotations

import json
from pathlib import Path


def hparams(cfg, meta: dict) -> dict:
    """Flat ``section.key`` -> bool/int/float/str (lists and dicts as JSON text)."""
    from motionclr.train.resume import flatten
    out = {}
    for k, v in flatten(cfg.to_dict()).items():
        out[k] = v if isinstance(v, (bool, int, float, str)) else json.dumps(v, default=str)
    out["epochs_trained"] = int(meta["epochs"])
    return out


def log_eval(run: str | Path, cfg, meta: dict, protocol: str, metrics: dict) -> None:
    """``metrics``: {name: value in [0, 1]}; nothing when ``train.tensorboard`` is off."""
    if not cfg.train.tensorboard or not metrics:
        return
    from torch.utils.tensorboard import SummaryWriter
    tags = {f"eval/{protocol}/{k}": float(v) for k, v in metrics.items()}
    with SummaryWriter(str(Path(run) / "tb")) as w:
        for tag, v in tags.items():
            w.add_scalar(tag, v, meta["step"])
        w.add_hparams(hparams(cfg, meta), tags, run_name=f"hparams-{protocol}",
                      global_step=meta["step"])


__all__ = ["log_eval", "hparams"]
