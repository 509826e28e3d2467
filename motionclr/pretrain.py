"""`motionclr pretrain`: find the flow stage, then train on it (``train.loop.train``).

This is where pretraining meets the rest of the package: the stage and the motion index
come from the pipeline, the kNN monitor from eval, so ``motionclr.train`` imports neither.
"""
from __future__ import annotations

from pathlib import Path

from motionclr.config import Config, config_from_dict


def knn_monitor(model, stage, cfg: Config, device, epoch: int, path: Path) -> float:
    """Cheap progress signal: kNN top-1 of query videos against the gallery's features
    (one centre clip per video), appended to ``knn.csv`` under ``epoch`` (finished epochs,
    counted from 1). Never used to pick a model."""
    from motionclr.eval.features import extract
    from motionclr.eval.knn import knn_accuracy
    cheap = config_from_dict(cfg.to_dict())
    cheap.eval.num_clips, cheap.eval.dense, cheap.eval.crops = 1, False, 1
    feats = {s: extract(model, stage, s, cheap, device, progress=False)
             for s in (cfg.eval.gallery, cfg.eval.query)}
    g, q = feats[cfg.eval.gallery], feats[cfg.eval.query]
    acc = knn_accuracy(g["feats"], g["labels"], q["feats"], q["labels"])
    new = not path.is_file()
    with open(path, "a") as f:
        f.write(("epoch,knn_top1\n" if new else "") + f"{epoch},{acc:.4f}\n")
    model.train()
    return acc


def pretrain(cfg: Config, progress: bool = True) -> Path:
    """Train ``cfg.method`` on the cached flow stage; resumes from ``<run>/checkpoint.pt``."""
    from motionclr.pipeline.index_stage import load_index, run_index_stage
    from motionclr.pipeline.stages import find_flow_stage
    from motionclr.train.loop import train
    from motionclr.devices import resolve_device
    from motionclr.train.methods import validate_method
    from motionclr.storage.warm import check_direct
    from motionclr.utils import dist_info

    validate_method(cfg)  # method params typed and checked before any data is read or written
    check_direct(cfg.data.direct)  # before anything is written, like the method params
    resolve_device(cfg.train.device)  # CUDA asked for but absent: one line, nothing written
    stage = find_flow_stage(cfg)
    rank = dist_info()[0]
    # Cheap next to flow, and cached beside the shards: computed on first use.
    return train(cfg, stage, progress,
                 load_index=lambda: load_index(run_index_stage(
                     cfg, stage, progress=progress and rank == 0)),
                 monitor=knn_monitor)
