"""Retrieval inside the train split by held-out groups: a validation score.

A pretraining knob (a loss weight, say) must be chosen without the test split. UCF101's
protocol holds out whole groups (clips cut from one source video) between train and test;
this does the same inside train: each group number in turn queries the train videos of the
other numbers, with the test protocol's geometry (``retrieval_protocols.neighbours``). A
sibling clip of the query's own source video is never its neighbour, so the score measures
what the test split measures, on labels the model may be tuned on. Datasets whose ids carry
no groups (HMDB51, Kinetics, a folder) get per-class random folds of videos instead, and
the result says so (``unit``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from motionclr.datasets.sources.ucf101 import group_numbers
from motionclr.eval.retrieval_protocols import neighbours


def group_folds(video_ids, labels=None, n_folds: int = 4,
                seed: int = 0) -> tuple[np.ndarray, str]:
    """((N,) fold of each video, the unit held out).

    UCF101-layout ids (``v_<Class>_gXX_cYY``, every one) give their group number: the unit
    is the source ``group``. Ids without groups (HMDB51, Kinetics, a folder) are dealt into
    ``n_folds`` folds per class in a seeded random order (needs ``labels``): the unit is the
    ``video``, and clips of one source video may then sit on both sides.
    """
    nums = group_numbers(video_ids)
    if nums is not None:
        return nums, "group"
    if labels is None:
        raise ValueError("video ids without UCF101 groups need labels to be dealt into folds")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    folds = np.empty(len(labels), np.int64)
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        folds[idx] = np.arange(len(idx)) % n_folds
    return folds, "video"


def held_out_group_recall(feats, labels, folds, ks=(1, 5), center: bool = True) -> dict:
    """R@k when every fold's videos query the videos of all other folds.

    Args:
        feats: (N, D) video features; labels: (N,) class ids; folds: (N,) fold ids.
        ks: the k of each R@k. center: per-set centring, as the test protocol.
    Returns:
        {"recall": {k: fraction of all N queries with a same-class video among their top
        k}, "n_query": N, "folds": number of folds}. Fewer than 2 folds is an error.
    """
    feats, labels, folds = np.asarray(feats), np.asarray(labels), np.asarray(folds)
    names = np.unique(folds)
    if len(names) < 2:
        raise ValueError(f"held-out-group retrieval needs >= 2 groups in the split, got "
                         f"{names.tolist()}")
    hits = {k: 0 for k in ks}
    for f in names:
        q, g = folds == f, folds != f
        idx, _ = neighbours(feats[q], feats[g], k=max(ks), center=center)
        same = labels[g][idx] == labels[q][:, None]
        for k in ks:
            hits[k] += int(same[:, :k].any(axis=1).sum())
    return {"recall": {k: hits[k] / len(labels) for k in ks}, "n_query": int(len(labels)),
            "folds": int(len(names))}


def run_val_recall(run: str | Path, overrides: list[str] | None = None, device: str = "auto",
                   progress: bool = True, ks=None) -> dict:
    """``held_out_group_recall`` of ``<run>``'s cached train-split (gallery) features, at
    ``ks`` (default ``eval.ks``); writes ``<run>/val_retrieval.json`` and returns it."""
    import json

    from motionclr.eval.features import protocol, run_features
    from motionclr.eval.retrieval import format_table
    from motionclr.pipeline.cache import atomic_write_text
    run = Path(run)
    rf = run_features(run, overrides, device, progress)
    cfg, tr = rf.cfg, rf.gallery
    ks = tuple(ks or cfg.eval.ks)
    folds, unit = group_folds(tr["video_ids"], tr["labels"])
    got = {**held_out_group_recall(tr["feats"], tr["labels"], folds, ks,
                                   center=cfg.eval.center), "unit": unit}
    result = {**got, "protocol": {**protocol(cfg), "center": cfg.eval.center,
                                  "similarity": "cosine", "subset": cfg.eval.gallery,
                                  "queries": "each fold in turn (folds: UCF101 group numbers, "
                                             "or videos dealt per class into 4)",
                                  "gallery": "the subset's videos of the other folds"},
              "dataset": cfg.data.dataset, "method": cfg.method.name,
              "epochs": rf.meta["epochs"], "stage": str(rf.stage)}
    atomic_write_text(run / "val_retrieval.json",
                      json.dumps({**result, "recall": {str(k): v for k, v in
                                                       got["recall"].items()}}, indent=1))
    if progress:
        print(format_table(got["recall"], f"val retrieval {cfg.data.dataset} "
                                          f"{cfg.method.name} ({got['n_query']} "
                                          f"{cfg.eval.gallery} videos, {got['folds']} folds "
                                          f"by {unit})"))
    return result
