"""Clip features for evaluation, extracted once per (checkpoint, stage, split, protocol).

A video's feature is the mean over ``num_clips`` uniformly spaced clips (centre crop; no random augmentation at test time) of the backbone's pooled output.
Every video of the subset is included: no batch is dropped.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from motionclr.datasets.samplers import UniformClips
from motionclr.datasets.shard_dataset import ShardClipDataset, batch_to_device
from motionclr.pipeline.cache import stable_hash


def protocol(cfg) -> dict:
    return {"num_clips": cfg.eval.num_clips, "clip_len": cfg.clip.clip_len,
            "stride": cfg.clip.stride, "crop": cfg.clip.crop, "window": "full frame (centre crop)",
            "split": cfg.data.split, "layer": "backbone_pool", "test_augmentation": "none"}


@torch.no_grad()
def extract(model, stage_dir, subset: str, cfg, device="cpu", progress: bool = True) -> dict:
    """Features of every ``subset`` video: {"feats": (N, D), "labels": (N,), "video_ids"}."""
    from tqdm import tqdm
    c = cfg.clip
    ds = ShardClipDataset(stage_dir, subset, cfg.data.split, train=False,
                          sampler=UniformClips(c.clip_len, c.stride, cfg.eval.num_clips),
                          modalities=("rgb",))
    loader = DataLoader(ds, batch_size=cfg.eval.batch_size, shuffle=False, drop_last=False,
                        num_workers=cfg.train.num_workers)
    feats, labels, ids = [], [], []
    model.eval()
    for batch in tqdm(loader, desc=f"features {subset}", disable=not progress, leave=False):
        rgb = batch_to_device(batch, device)["rgb"]     # (B, V, 3, T, H, W) uint8
        b, v = rgb.shape[:2]
        x = model.eval_augment({"rgb": rgb.flatten(0, 1)})["rgb"]
        f = model.embed(x).float().view(b, v, -1).mean(dim=1)   # (B, D)
        feats.append(f.cpu())
        labels.append(batch["label"])
        ids += list(batch["video_id"])
    out = {"feats": torch.cat(feats).numpy(), "labels": torch.cat(labels).numpy(),
           "video_ids": np.array(ids)}
    assert len(out["feats"]) == len(ds), "every video must be counted"
    return out


def cached_features(model, stage_dir, subset: str, cfg, run_dir: Path, meta: dict,
                    device="cpu", progress: bool = True) -> dict:
    """``extract`` with a cache in ``<run>/features/`` keyed by checkpoint and protocol."""
    key = stable_hash({"ckpt": meta.get("checkpoint_mtime"), "epoch": meta.get("epoch"),
                       "stage": str(stage_dir), "subset": subset, **protocol(cfg)})
    path = Path(run_dir) / "features" / f"{subset}-{key}.npz"
    if path.is_file():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    out = extract(model, stage_dir, subset, cfg, device, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, **out)
    tmp.replace(path)
    return out
