"""Video retrieval: test videos query the train gallery; R@k counts a hit when any of the
top k neighbours shares the query's class (CoCLR/MSCL protocol: features mean-centred per
set, L2-normalised, cosine similarity)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def warn_k_vs_gallery(ks, n_gallery: int, what: str) -> list[str]:
    """One stderr line per k that is at least the gallery size: such a number says nothing
    about the features (R@k is 1 whenever the class is in the gallery at all; a kNN vote
    over the whole gallery is the same for every query up to the weights)."""
    lines = [f"warning: {what} k={k} >= gallery size {n_gallery} ({what} at this k does "
             f"not measure the features; use a k below {n_gallery} or a larger gallery)"
             for k in ks if int(k) >= n_gallery]
    for line in lines:
        print(line, file=sys.stderr)
    return lines


def recall_at_k(query_feats, query_labels, gallery_feats, gallery_labels,
                ks=(1, 5, 10, 20, 50), center: bool = True) -> dict[int, float]:
    """Recall@k of every query.

    Args:
        query_feats: (Q, D); gallery_feats: (G, D); labels: (Q,), (G,) ints.
        ks: cut-offs; a k larger than G is evaluated at G.
        center: subtract each set's own mean feature before normalising.
    Returns:
        {k: fraction of queries with a same-class video among the top k}.
    """
    from motionclr.eval.retrieval_protocols import neighbours
    order, _ = neighbours(query_feats, gallery_feats, k=max(ks), center=center)  # (Q, k)
    hits = np.asarray(gallery_labels)[order] == np.asarray(query_labels)[:, None]
    return {int(k): float(hits[:, :k].any(axis=1).mean()) for k in ks}


def format_table(recalls: dict, title: str = "") -> str:
    ks = sorted(recalls)
    head = "| " + " | ".join(f"R@{k}" for k in ks) + " |"
    sep = "|" + "---|" * len(ks)
    row = "| " + " | ".join(f"{100 * recalls[k]:.1f}" for k in ks) + " |"
    return "\n".join(([title] if title else []) + [head, sep, row])


def run_retrieval(run: str | Path, overrides: list[str] | None = None, device: str = "auto",
                  progress: bool = True) -> dict:
    """Evaluate ``<run>/checkpoint.pt``; writes ``<run>/retrieval.json``, returns it."""
    from motionclr.eval.features import protocol, run_features
    from motionclr.eval.tb import log_eval
    from motionclr.pipeline.cache import atomic_write_text

    run = Path(run)
    rf = run_features(run, overrides, device, progress)
    cfg, meta, stage, gallery, query = rf.cfg, rf.meta, rf.stage, rf.gallery, rf.query
    warn_k_vs_gallery(cfg.eval.ks, len(gallery["labels"]), "retrieval")
    rec = recall_at_k(query["feats"], query["labels"], gallery["feats"], gallery["labels"],
                      ks=tuple(cfg.eval.ks), center=cfg.eval.center)
    result = {"recall": {str(k): v for k, v in rec.items()},
              "protocol": {**protocol(cfg), "center": cfg.eval.center, "similarity": "cosine",
                           "l2_normalised": True, "query": cfg.eval.query,
                           "gallery": cfg.eval.gallery,
                           "hit": "any of top-k shares the query class",
                           "n_query": int(len(query["labels"])),
                           "n_gallery": int(len(gallery["labels"]))},
              "dataset": cfg.data.dataset, "method": cfg.method.name,
              "backbone": cfg.model.backbone, "epochs": meta["epochs"], "stage": str(stage)}
    atomic_write_text(run / "retrieval.json", json.dumps(result, indent=1))
    log_eval(run, cfg, meta, "retrieval", {f"R@{k}": v for k, v in rec.items()})
    if progress:
        print(format_table(rec, f"retrieval {cfg.data.dataset} {cfg.method.name} "
                                f"(split {cfg.data.split}, {result['protocol']['n_query']} "
                                f"queries, {result['protocol']['n_gallery']} gallery)"))
    return result
