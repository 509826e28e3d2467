"""Weighted kNN classification on frozen features (DINO ``eval_knn.py`` / solo-learn).

Every test video votes with its ``k`` most cosine-similar train videos, each vote weighted
``exp(sim / T)``. Cheap enough to run as a monitor during pretraining; not the standard
UCF101/HMDB51 number (that is the linear probe or finetuning).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

DEFAULTS = {"ks": [10, 20], "temperature": 0.07}


@torch.no_grad()
def knn_predict(train_feats, train_labels, test_feats, k: int = 20, T: float = 0.07,
                num_classes: int | None = None, chunk: int = 1024) -> np.ndarray:
    """Predicted class of every test feature.

    Args:
        train_feats: (N, D) gallery features; train_labels: (N,) ints.
        test_feats: (M, D). k: neighbours (clipped to N). T: vote temperature.
        num_classes: C; defaults to max label + 1.
        chunk: test rows per similarity block, so (chunk, N) is the largest matrix.
    Returns:
        (M,) int64 predictions; ties in the vote go to the lower class id.
    """
    tr = F.normalize(torch.as_tensor(np.asarray(train_feats), dtype=torch.float32), dim=1)
    te = F.normalize(torch.as_tensor(np.asarray(test_feats), dtype=torch.float32), dim=1)
    labels = torch.as_tensor(np.asarray(train_labels), dtype=torch.long)
    c = int(num_classes or int(labels.max()) + 1)
    k = min(int(k), tr.shape[0])
    out = []
    for s in range(0, te.shape[0], chunk):
        sim = te[s:s + chunk] @ tr.T                           # (m, N) cosine
        top, idx = sim.topk(k, dim=1)
        votes = torch.zeros(sim.shape[0], c).scatter_add_(1, labels[idx], (top / T).exp())
        out.append(votes.argmax(dim=1))
    return torch.cat(out).numpy()


def knn_accuracy(train_feats, train_labels, test_feats, test_labels, k: int = 20,
                 T: float = 0.07) -> float:
    """Top-1 accuracy of ``knn_predict`` (fraction of test items, every item counted)."""
    c = int(max(np.max(train_labels), np.max(test_labels))) + 1
    pred = knn_predict(train_feats, train_labels, test_feats, k, T, num_classes=c)
    return float((pred == np.asarray(test_labels)).mean())


def run_knn(run: str | Path, overrides: list[str] | None = None, device: str = "auto",
            knobs: dict | None = None, progress: bool = True) -> dict:
    """kNN of the test split against the train split on cached features; writes knn.json."""
    from motionclr.eval.features import protocol, run_features
    from motionclr.eval.retrieval_protocols import eval_subsets, resolve_knobs
    from motionclr.eval.tb import log_eval
    from motionclr.pipeline.cache import atomic_write_text

    run = Path(run)
    rf = run_features(run, overrides, device, progress)
    cfg, meta, tr, te = rf.cfg, rf.meta, rf.gallery, rf.query
    kn = resolve_knobs(cfg, "knn", DEFAULTS, knobs)
    train, test = eval_subsets(cfg)
    from motionclr.eval.retrieval import warn_k_vs_gallery
    warn_k_vs_gallery(kn["ks"], len(tr["labels"]), "kNN")
    acc = {str(k): knn_accuracy(tr["feats"], tr["labels"], te["feats"], te["labels"], k,
                                kn["temperature"]) for k in kn["ks"]}
    result = {"top1": acc, "protocol": {**protocol(cfg), **kn, "similarity": "cosine",
                                        "vote": "sum of exp(sim/T) per class",
                                        "gallery": train, "query": test,
                                        "n_train": int(len(tr["labels"])),
                                        "n_test": int(len(te["labels"]))},
              "dataset": cfg.data.dataset, "method": cfg.method.name,
              "backbone": cfg.model.backbone, "epochs": meta["epochs"]}
    atomic_write_text(run / "knn.json", json.dumps(result, indent=1))
    log_eval(run, cfg, meta, "knn", {f"top1_k{k}": v for k, v in acc.items()})
    if progress:
        print("knn top-1: " + ", ".join(f"k={k}: {100 * v:.1f}" for k, v in acc.items()))
    return result
