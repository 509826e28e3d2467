"""Full-network finetuning of a pretrained backbone, and multi-view testing (eval.md B.3).

Training: one random clip per video (``RandomClip``), ``GPUAugment(train=True)`` on RGB, the
pretrained backbone + dropout + a new linear head. Recipes ``mcl`` (SGD 0.01, cosine, wd 1e-4,
dropout 0.9, grad clip 40) and ``coclr`` (Adam 1e-3, wd 1e-3, backbone LR /10, LR x0.1 at
80 % and 90 %), with ``epochs`` scaled by the caller. The last epoch is reported: no model
selection at all, so the test split is never used to pick anything.

Testing: every test video gives ``clips x crops`` deterministic views (``PRESETS``) on full
decoded frames; scores are averaged over views as softmax or logits (``aggregate``).
"""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, RandomSampler

from motionclr import interrupts
from motionclr.datasets.samplers import RandomClip
from motionclr.datasets.shard_dataset import batch_to_device
from motionclr.datasets.transforms import AugmentCfg, GPUAugment, normalize
# The test views live in ``views.py`` (shared with the feature extractor); re-exported here.
from motionclr.eval.views import clip_sampler, crop_views
from motionclr.train.optim import optimizer_step

PRESETS = {"1x1": (1, 1), "10x1": (10, 1), "10x3": (10, 3), "20x3": (20, 3),
           "dense": ("dense", 1), "densex10": ("dense", 10)}
RECIPES = {
    "mcl": {"optimizer": "sgd", "lr": 0.01, "weight_decay": 1e-4, "schedule": "cosine",
            "epochs": 150, "dropout": 0.9, "grad_clip": 40.0, "backbone_lr_mult": 1.0},
    "coclr": {"optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-3, "schedule": "step",
              "epochs": 500, "dropout": 0.9, "grad_clip": 0.0, "backbone_lr_mult": 0.1},
}
DEFAULTS = {"recipe": "mcl", **RECIPES["mcl"], "milestones": [0.8, 0.9], "batch_size": 32,
            "views": ["10x1", "10x3"], "aggregate": "softmax", "init": "pretrained",
            "flip": "data", "jitter_p": 0.8, "gray_p": 0.0, "blur_p": 0.0,
            "crop_frac": 0.875, "seed": 0}


def sampler_for(preset: str, clip_len: int, stride: int):
    """The clip sampler of a test preset (uniform clips or dense windows)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown test preset {preset!r}; valid: {sorted(PRESETS)}")
    return clip_sampler(PRESETS[preset][0], clip_len, stride)


class Classifier(nn.Module):
    """Backbone -> dropout -> linear head (N, 3, T, H, W) -> (N, num_classes) logits."""

    def __init__(self, backbone: nn.Module, num_classes: int, dropout: float = 0.9):
        super().__init__()
        self.backbone, self.dropout = backbone, nn.Dropout(dropout)
        self.head = nn.Linear(backbone.out_dim, num_classes)

    def forward(self, x):
        return self.head(self.dropout(self.backbone(x)))


@torch.no_grad()
def video_scores(net, rgb, crops: int, size: int, aggregate: str = "softmax",
                 crop_frac: float = 0.875, chunk: int = 64) -> torch.Tensor:
    """Averaged scores (C,) of one video's uint8 clips ``rgb (V, 3, T, H, W)`` over V x crops
    views; ``aggregate``: ``softmax`` (CoCLR, MSCL) or ``logits`` (VCOP, MCL)."""
    x = crop_views(rgb, crops, size, crop_frac)
    # Dense windows x 10 crops can be hundreds of clips: forward in chunks.
    with torch.autocast(x.device.type, enabled=x.is_cuda):
        logits = torch.cat([net(normalize({"rgb": x[i:i + chunk]})["rgb"]).float()
                            for i in range(0, len(x), chunk)])
    if aggregate not in ("softmax", "logits"):
        raise ValueError(f"aggregate must be softmax or logits, got {aggregate!r}")
    return (logits.softmax(1) if aggregate == "softmax" else logits).mean(0)


def evaluate(net, stage, cfg, preset: str, k: dict, device) -> dict:
    """Test top-1/top-5 of ``preset`` over every test video (full frames, batch of 1 video
    so frame sizes and dense clip counts may differ between videos)."""
    from motionclr.datasets.shard_dataset import ShardClipDataset
    from motionclr.eval.linear import topk_accuracy
    from motionclr.eval.retrieval_protocols import check_labelled, eval_subsets
    c = cfg.clip
    # One video per batch: full frames always, so 3/10-crop presets see the whole width.
    ds = ShardClipDataset(stage, eval_subsets(cfg)[1], cfg.data.split, train=False, window=0,
                          sampler=sampler_for(preset, c.clip_len, c.stride), modalities=("rgb",))
    net.eval()
    scores, labels, n_clips = [], [], []
    for b in DataLoader(ds, batch_size=1, num_workers=cfg.train.num_workers):
        rgb = batch_to_device(b, device)["rgb"][0]
        scores.append(video_scores(net, rgb, PRESETS[preset][1], c.crop, k["aggregate"],
                                   k["crop_frac"]).cpu())
        labels.append(int(b["label"][0]))
        n_clips.append(rgb.shape[0])
    check_labelled(labels, eval_subsets(cfg)[1])
    acc = topk_accuracy(torch.stack(scores), torch.tensor(labels), (1, 5))
    return {"top1": acc[1], "top5": acc[5], "n_test": len(labels), "clips": PRESETS[preset][0],
            "crops": PRESETS[preset][1], "mean_clips_per_video": float(np.mean(n_clips))}


def finetune_knobs(cfg, knobs: dict | None = None) -> dict:
    """DEFAULTS <- the named recipe <- user knobs (``cfg.eval.finetune`` then ``knobs``).

    ``flip="data"`` follows ``data.flip`` (``shared`` means one clip per video, so it becomes
    ``independent``)."""
    from motionclr.eval.retrieval_protocols import resolve_knobs
    user = resolve_knobs(cfg, "finetune", DEFAULTS, knobs, only_given=True)
    recipe = user.get("recipe", DEFAULTS["recipe"])
    if recipe not in RECIPES:
        raise ValueError(f"unknown finetune recipe {recipe!r}; valid: {sorted(RECIPES)}")
    k = {**DEFAULTS, **RECIPES[recipe], **user}
    if k["flip"] == "data":  # the dataset's policy: off for direction-defined classes
        k["flip"] = "off" if cfg is None or cfg.data.flip == "off" else "independent"
    for key, valid in (("optimizer", ("sgd", "adam")), ("schedule", ("cosine", "step")),
                       ("init", ("pretrained", "random")), ("aggregate", ("softmax", "logits"))):
        if k[key] not in valid:  # fail before hours of training, not after
            raise ValueError(f"eval.finetune.{key}={k[key]!r}; valid: {list(valid)}")
    for preset in k["views"]:
        sampler_for(preset, 1, 1)
    return k


def lr_factor(step: int, total: int, k: dict) -> float:
    """Per-iteration LR multiplier: cosine to 0, or x0.1 at each milestone fraction."""
    if k["schedule"] == "cosine":
        return 0.5 * (1 + math.cos(math.pi * step / max(total, 1)))
    return 0.1 ** sum(step >= round(m * total) for m in k["milestones"])


def train_epoch(net, loader, aug, opt, epoch: int, k: dict, device, gen, scaler=None) -> dict:
    """One pass (``epoch`` 0-based, reported counted from 1 as printed); per-iteration LR of
    each group = lr x group mult x ``lr_factor``."""
    net.train()
    loss_sum, correct, n, total = 0.0, 0, 0, k["epochs"] * len(loader)
    for i, b in enumerate(loader):
        interrupts.check()  # a Ctrl-C swallowed while the loader forked its workers
        for g in opt.param_groups:
            g["lr"] = k["lr"] * g["mult"] * lr_factor(epoch * len(loader) + i, total, k)
        x = aug({"rgb": batch_to_device(b, device)["rgb"][:, 0]}, gen)["rgb"]  # fp32 augment
        y = b["label"].to(device)
        with torch.autocast(device.type, enabled=scaler is not None):
            logits = net(x)
            loss = F.cross_entropy(logits.float(), y)
        optimizer_step(loss, opt, net.parameters(), k["grad_clip"], scaler)
        loss_sum += loss.item() * len(y)
        correct += int((logits.argmax(1) == y).sum())
        n += len(y)
    return {"epoch": epoch + 1, "loss": loss_sum / max(n, 1), "train_top1": correct / max(n, 1)}


def run_finetune(run: str | Path, overrides: list[str] | None = None, device: str = "auto",
                 knobs: dict | None = None, progress: bool = True) -> dict:
    """Finetune ``<run>``'s backbone; ``<run>/finetune/checkpoint.pt`` each epoch (resumed
    when the knobs and the pretraining epoch match), then ``<run>/finetune.json``."""
    from motionclr.datasets.shard_dataset import ShardClipDataset
    from motionclr.eval.checkpoint import load_run
    from motionclr.eval.retrieval_protocols import eval_subsets
    from motionclr.pipeline.cache import atomic_write_text
    from motionclr.storage.shards import load_manifest
    from motionclr.pipeline.stages import find_flow_stage
    from motionclr.eval.tb import log_eval
    from motionclr.train.backbones import build_backbone
    from motionclr.train.loop import _save_checkpoint

    run = Path(run)
    cfg, method, meta = load_run(run, overrides, device)
    device, stage = meta["device"], meta["stage"]
    k, c, (train, test) = finetune_knobs(cfg, knobs), cfg.clip, eval_subsets(cfg)
    torch.manual_seed(k["seed"])  # the new head (and the backbone when init=random)
    backbone = (copy.deepcopy(method.backbone) if k["init"] == "pretrained" else
                build_backbone(cfg.model.backbone, width=cfg.model.width))
    net = Classifier(backbone, len(load_manifest(stage)["classes"]), k["dropout"]).to(device)
    ds = ShardClipDataset(stage, train, cfg.data.split, sampler=RandomClip(c.clip_len,
                          c.stride, 1), train=True,
                          modalities=("rgb",), seed=k["seed"])
    order = torch.Generator()
    loader = DataLoader(ds, batch_size=min(k["batch_size"], len(ds)), drop_last=True,
                        sampler=RandomSampler(ds, generator=order),
                        num_workers=cfg.train.num_workers)
    aug = GPUAugment(AugmentCfg.from_config(cfg, train=True, flip=k["flip"],
                                            jitter_p=k["jitter_p"], gray_p=k["gray_p"],
                                            blur_p=k["blur_p"]))
    groups = [{"params": net.backbone.parameters(), "mult": k["backbone_lr_mult"]},
              {"params": net.head.parameters(), "mult": 1.0}]
    opt = (torch.optim.SGD(groups, lr=k["lr"], momentum=0.9, weight_decay=k["weight_decay"])
           if k["optimizer"] == "sgd" else
           torch.optim.Adam(groups, lr=k["lr"], weight_decay=k["weight_decay"]))
    scaler = torch.amp.GradScaler("cuda") if cfg.train.amp and device.type == "cuda" else None
    ckpt_path = run / "finetune" / "checkpoint.pt"
    ckpt_path.parent.mkdir(parents=True, exist_ok=True)
    start, history = 0, []
    if ckpt_path.is_file():
        ck = torch.load(ckpt_path, map_location=device, weights_only=True)
        if json.loads(ck["knobs"]) == k and ck["pretrain_epoch"] == meta["epoch"]:
            net.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            if scaler is not None and ck.get("scaler"):
                scaler.load_state_dict(ck["scaler"])
            start, history = ck["epoch"] + 1, json.loads(ck["history"])
        elif progress:
            print(f"finetune: {ckpt_path} has other knobs or pretraining epoch; starting over")
    gen = torch.Generator(device=device)
    for epoch in range(start, k["epochs"]):
        order.manual_seed(k["seed"] * 100_003 + epoch)  # shuffle and crops replay on resume
        gen.manual_seed(k["seed"] * 100_003 + epoch)
        ds.set_epoch(epoch)
        history.append(train_epoch(net, loader, aug, opt, epoch, k, device, gen, scaler))
        _save_checkpoint(ckpt_path, {"model": net.state_dict(), "optimizer": opt.state_dict(),
                                     "scaler": scaler.state_dict() if scaler else None,
                                     "epoch": epoch, "knobs": json.dumps(k),
                                     "history": json.dumps(history),
                                     "pretrain_epoch": meta["epoch"], "motionclr_finetune": 1})
        if progress:
            print(f"finetune epoch {epoch + 1}/{k['epochs']} loss {history[-1]['loss']:.4f}")
    results = {p: evaluate(net, stage, cfg, p, k, device) for p in k["views"]}
    result = {"results": results, "history": history,
              "protocol": {**k, "clip_len": c.clip_len, "stride": c.stride, "crop": c.crop,
                           "short_side": cfg.decode.short_side, "split": cfg.data.split,
                           "train_subset": train, "test_subset": test,
                           "reported": "last epoch (no model selection)",
                           "test_augmentation": "none (deterministic clips and crops)",
                           "train_sampler": "RandomClip, 1 clip per video"},
              "dataset": cfg.data.dataset, "method": cfg.method.name,
              "backbone": cfg.model.backbone, "pretrain_epochs": meta["epochs"],
              "stage": str(stage), "checkpoint": str(ckpt_path)}
    atomic_write_text(run / "finetune.json", json.dumps(result, indent=1))
    log_eval(run, cfg, meta, "finetune", {f"{p}/{m}": r[m] for p, r in results.items()
                                          for m in ("top1", "top5")})
    if progress:
        for p, r in results.items():
            print(f"finetune {p}: top-1 {100 * r['top1']:.1f} top-5 {100 * r['top5']:.1f}")
    return result
