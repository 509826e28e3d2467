"""Clip features for evaluation, extracted once per (checkpoint, stage, split, protocol).

A video's feature is the mean over its views of one layer's output. The views are
``eval.num_clips`` uniformly spaced clips, or every dense window (``eval.dense``: CoCLR's
half-overlapping windows), times ``eval.crops`` spatial crops (1: the centred square of the
short side; 3: that square at the start, centre and end of the long side), each resized to
``clip.crop``. ``eval.clip_l2`` L2-normalises each view's feature before the mean (CoCLR);
``eval.layer`` is ``backbone_pool`` (the pooled backbone output, ``method.embed``) or
``projector`` (the projection head's output, before its L2). The views are the shared
test views of ``motionclr.eval.views``: no random augmentation at test time.
Every video of the subset is included: no batch is dropped.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from motionclr import interrupts
from motionclr.atomic import atomic_write
from motionclr.datasets.shard_dataset import ShardClipDataset, batch_to_device
from motionclr.datasets.transforms import normalize
from motionclr.eval.views import DenseClips, clip_sampler, crop_views
from motionclr.pipeline.cache import stable_hash

CROPS = (1, 3)
LAYERS = ("backbone_pool", "projector")


def feature_knobs(cfg) -> dict:
    """The extractor's ``eval`` knobs, validated: a bad value fails with the valid ones."""
    e = cfg.eval
    k = {"num_clips": e.num_clips, "crops": getattr(e, "crops", 1),
         "dense": getattr(e, "dense", False), "clip_l2": getattr(e, "clip_l2", False),
         "layer": getattr(e, "layer", "backbone_pool")}
    if k["crops"] not in CROPS:
        raise ValueError(f"eval.crops={k['crops']!r}; valid: {list(CROPS)}")
    if k["layer"] not in LAYERS:
        raise ValueError(f"eval.layer={k['layer']!r}; valid: {list(LAYERS)}")
    if not k["dense"] and (not isinstance(k["num_clips"], int) or k["num_clips"] < 1):
        raise ValueError(f"eval.num_clips={k['num_clips']!r}; valid: an integer >= 1 "
                         "(or eval.dense=true)")
    for b in ("dense", "clip_l2"):
        if not isinstance(k[b], bool):
            raise ValueError(f"eval.{b}={k[b]!r}; valid: [True, False]")
    return k


def protocol(cfg) -> dict:
    """Everything the features depend on (the cache key; copied into every results JSON)."""
    k, c = feature_knobs(cfg), cfg.clip
    clips = "dense" if k["dense"] else k["num_clips"]
    return {"num_clips": clips, "crops": k["crops"],
            "dense_step": DenseClips(c.clip_len, c.stride).step if k["dense"] else None,
            "clip_len": c.clip_len, "stride": c.stride, "crop": c.crop,
            "window": "full frame",
            "spatial": "centre square of the short side" if k["crops"] == 1 else
                       "3 squares of the short side: start / centre / end of the long side",
            "clip_l2": k["clip_l2"], "aggregate": "mean over clips x crops",
            "split": cfg.data.split, "layer": k["layer"], "test_augmentation": "none"}


def _as_list(samples):
    """Collate: keep samples apart (dense clip counts and frame sizes differ by video)."""
    return samples


def pool_views(feats: torch.Tensor, counts: list[int], clip_l2: bool = False) -> torch.Tensor:
    """Per-view features ``(sum(counts), D)``, grouped by video -> per-video mean ``(B, D)``;
    ``clip_l2``: each view's feature is L2-normalised first."""
    if clip_l2:
        feats = F.normalize(feats, dim=1)
    return torch.stack([f.mean(dim=0) for f in feats.split(list(counts))])


def layer_output(model, x: torch.Tensor, layer: str = "backbone_pool") -> torch.Tensor:
    """``method.embed`` (pooled backbone) or the projection head on it."""
    h = model.embed(x)
    if layer == "backbone_pool":
        return h
    if not hasattr(model, "projector"):
        raise ValueError(f"eval.layer=projector: {type(model).__name__} has no projector")
    return model.projector(h)


@torch.no_grad()
def extract(model, stage_dir, subset: str, cfg, device="cpu", progress: bool = True) -> dict:
    """Features of every ``subset`` video: {"feats": (N, D), "labels": (N,), "video_ids",
    "n_views": (N,) clips x crops averaged per video}."""
    from tqdm import tqdm
    k, c = feature_knobs(cfg), cfg.clip
    ds = ShardClipDataset(stage_dir, subset, cfg.data.split, train=False, window=0,
                          sampler=clip_sampler("dense" if k["dense"] else k["num_clips"],
                                               c.clip_len, c.stride),
                          modalities=("rgb",))
    loader = DataLoader(ds, batch_size=cfg.eval.batch_size, shuffle=False, drop_last=False,
                        num_workers=cfg.train.num_workers, collate_fn=_as_list)
    aug = model.eval_augment.cfg  # the normalisation the method was trained with
    chunk = max(1, cfg.eval.batch_size * k["num_clips"])  # clips per forward pass
    feats, labels, ids, n_views = [], [], [], []
    model.eval()
    for samples in tqdm(loader, desc=f"features {subset}", disable=not progress, leave=False):
        interrupts.check()  # a Ctrl-C swallowed while the loader forked its workers
        views = []
        for s in samples:  # (1, V, T, H, W, 3) -> (V, 3, T, H, W) on the device
            rgb = batch_to_device({"rgb": torch.from_numpy(s["rgb"])[None]}, device)["rgb"][0]
            views.append(crop_views(rgb, k["crops"], c.crop))
            n_views.append(len(views[-1]))
        x = torch.cat(views)
        f = torch.cat([layer_output(model, normalize({"rgb": x[i:i + chunk]}, aug.mean,
                                                     aug.std)["rgb"], k["layer"]).float()
                       for i in range(0, len(x), chunk)])
        feats.append(pool_views(f, n_views[-len(samples):], k["clip_l2"]).cpu())
        labels += [int(s["label"]) for s in samples]
        ids += [s["video_id"] for s in samples]
    out = {"feats": torch.cat(feats).numpy(), "labels": np.asarray(labels, np.int64),
           "video_ids": np.array(ids), "n_views": np.asarray(n_views, np.int64)}
    assert len(out["feats"]) == len(ds), "every video must be counted"
    return out


def cache_key(stage_dir, subset: str, cfg, meta: dict) -> str:
    """Hash of the checkpoint, the stage, the subset and ``protocol(cfg)``."""
    return stable_hash({"ckpt": meta.get("checkpoint_mtime"), "epoch": meta.get("epoch"),
                        "stage": str(stage_dir), "subset": subset, **protocol(cfg)})


def cached_features(model, stage_dir, subset: str, cfg, run_dir: Path, meta: dict,
                    device="cpu", progress: bool = True) -> dict:
    """``extract`` with a cache in ``<run>/features/`` keyed by checkpoint and protocol."""
    path = Path(run_dir) / "features" / f"{subset}-{cache_key(stage_dir, subset, cfg, meta)}.npz"
    if path.is_file():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    out = extract(model, stage_dir, subset, cfg, device, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: np.savez(f, **out))  # disk full: one line, no partial file
    return out


@dataclass
class RunFeatures:
    """What every feature-based protocol starts from (``run_features``)."""
    cfg: object
    model: object
    meta: dict
    stage: Path
    gallery: dict        # features of ``eval.gallery`` ("train")
    query: dict          # features of ``eval.query`` ("test"; K400/SSv2 "val"), labelled


def run_features(run, overrides: list[str] | None = None, device="auto",
                 progress: bool = True) -> RunFeatures:
    """Load ``<run>`` with the flow stage it trained on (``checkpoint.run_stage``), and
    return cached gallery and query features; a query subset without labels is refused
    (it cannot be scored)."""
    from motionclr.eval.checkpoint import load_run
    from motionclr.eval.retrieval_protocols import check_labelled
    run = Path(run)
    cfg, model, meta = load_run(run, overrides, device)
    stage, device = meta["stage"], meta["device"]
    gallery = cached_features(model, stage, cfg.eval.gallery, cfg, run, meta, device, progress)
    query = cached_features(model, stage, cfg.eval.query, cfg, run, meta, device, progress)
    check_labelled(query["labels"], cfg.eval.query)
    return RunFeatures(cfg, model, meta, stage, gallery, query)
