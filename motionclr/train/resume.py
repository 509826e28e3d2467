"""Resume consistency: may this config continue that checkpoint?

A run directory holds one run: the weights in ``checkpoint.pt`` were trained under the
checkpoint's config, and ``config.yaml`` must describe them. So before anything is
written, the requested config is compared with the checkpoint's. A difference in a key
that changes what is trained (model, method, clip, data, augmentation, optimiser, LR,
schedule, seed, ...) is refused with the diff. Only the keys in ``MAY_CHANGE`` (and every
``eval.*`` key) may differ; they change how or where the run executes, or how long it runs.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from motionclr.config import Config, config_from_dict
from motionclr.errors import UserError

# key -> why it may differ on resume (docs/architecture.md, "Training", describes the check).
MAY_CHANGE: dict[str, str] = {
    "train.epochs": "more epochs (at least the finished ones); the LR and momentum schedules "
                    "are recomputed for the new length from the resume epoch on, and the change "
                    "is recorded in the checkpoint and provenance.jsonl",
    "train.device": "where it runs",
    "data.warm": "page-cache warming before training: speed, not data",
    "data.direct": "O_DIRECT or page-cache reads: speed, not data",
    "train.amp": "mixed precision on CUDA: numerics, not the objective",
    "train.num_workers": "data-loading processes",
    "train.log_every": "logging",
    "train.tensorboard": "logging",
    "train.knn_every": "the kNN monitor (never used to pick a model)",
    "train.run": "the same directory, however it is spelled",
    "flow.device": "where flow would be computed (the stage must already exist)",
    "pipeline.workers": "parallelism of a stage build",
    "pipeline.backend": "parallelism of a stage build",
    "pipeline.address": "parallelism of a stage build",
    "pipeline.shard": "slicing of a stage build",
    "data.root": "where the dataset lives, as long as it leads to the same flow stage",
    "data.cache": "where the cache lives, as long as it leads to the same flow stage",
}
MAY_CHANGE_PREFIXES = ("eval.",)  # evaluation settings (and the kNN monitor's views)


def may_change(key: str) -> bool:
    return key in MAY_CHANGE or key.startswith(MAY_CHANGE_PREFIXES)


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; dict-valued config fields are flattened too."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


_UNSET = object()


def _show(v: Any) -> str:
    return "(unset)" if v is _UNSET else json.dumps(v, default=str)


def config_diff(saved: dict, now: dict) -> list[tuple[str, Any, Any]]:
    """(key, checkpoint value, requested value) for every leaf that differs, sorted."""
    a, b = flatten(saved), flatten(now)
    return [(k, a.get(k, _UNSET), b.get(k, _UNSET)) for k in sorted(set(a) | set(b))
            if a.get(k, _UNSET) != b.get(k, _UNSET)]


def check_resume(ckpt: dict, cfg: Config, stage: Path | None, run: Path) -> dict:
    """Refuse (``UserError`` with the diff) unless ``cfg`` may continue ``ckpt``.

    Returns what the resume changes: ``{"from_epoch": finished epochs,
    "changed": {key: [checkpoint value, requested value]}}`` (allowed keys only).
    """
    # Through Config, so keys added to the code since the checkpoint read as their defaults.
    saved = config_from_dict(ckpt["config"]).to_dict()
    done = int(ckpt["epoch"]) + 1
    refused, changed = [], {}
    for key, old, new in config_diff(saved, cfg.to_dict()):
        if key == "train.epochs" and new < done:
            refused.append(f"  {key}: {_show(old)} -> {_show(new)} (the checkpoint has "
                           f"finished {done} epochs)")
        elif may_change(key):
            changed[key] = [None if old is _UNSET else old, None if new is _UNSET else new]
        else:
            refused.append(f"  {key}: {_show(old)} -> {_show(new)}")
    trained_on = ckpt.get("stage")
    if stage is not None and trained_on and Path(trained_on).name != Path(stage).name:
        refused.append(f"  flow stage: {Path(trained_on).name} -> {Path(stage).name} (this "
                       "data.root/data.cache leads to other data than the run trained on)")
    if refused:
        allowed = ", ".join(sorted(MAY_CHANGE)) + ", eval.*"
        raise UserError(
            f"{run} holds a checkpoint trained with another config; refusing to resume it "
            f"(nothing was written). Differences (checkpoint -> requested):\n"
            + "\n".join(refused) +
            f"\nKeys that may change on resume: {allowed}. To train this config, choose "
            f"another train.run (or delete {run}).")
    return {"from_epoch": done, "changed": changed}


__all__ = ["MAY_CHANGE", "may_change", "config_diff", "check_resume", "flatten"]
