"""Linear probe on frozen, cached video features (eval.md B.2).

Classifiers: ``bn_linear`` (CoCLR: BatchNorm1d + linear, SGD momentum 0.9, batch 1024,
LR x0.1 at 60 % and 80 % of the epochs), ``logreg`` (multinomial logistic regression) and
``svm`` (one-vs-rest L2-regularised squared-hinge linear SVM, liblinear ``-s 2`` as MCL),
the last two fitted full-batch with L-BFGS. Hyperparameters are chosen on a stratified,
seeded held-out part of the TRAIN split (``select_hparams`` is only ever given train
arrays); the winner is refitted on the whole train split and scored once on test.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

DEFAULTS = {
    "classifiers": ["bn_linear", "logreg"], "holdout": 0.2, "seed": 0, "l2_normalize": True,
    "epochs": 100, "milestones": [0.6, 0.8], "batch_size": 1024, "momentum": 0.9,
    "bn_lrs": [1.0, 0.1], "bn_wds": [1e-4, 1e-3, 1e-2, 1e-1],  # CoCLR README's tuning range
    "logreg_l2": [1e-5, 1e-4, 1e-3, 1e-2, 1e-1], "svm_c": [0.01, 0.1, 1.0, 10.0],
    "max_iter": 200,
}
GRIDS = {"bn_linear": lambda k: [{"lr": lr, "wd": wd} for lr in k["bn_lrs"] for wd in k["bn_wds"]],
         "logreg": lambda k: [{"l2": v} for v in k["logreg_l2"]],
         "svm": lambda k: [{"C": c} for c in k["svm_c"]]}


def stratified_holdout(labels, frac: float = 0.2, seed: int = 0, groups=None):
    """(fit_idx, val_idx): per class, ``round(frac * n)`` units (>= 1, and >= 1 left to fit
    when the class has 2+) go to validation; seeded, so the split is reproducible.

    A unit is a video, or with ``groups`` ((N,) source-group ids, e.g. UCF101's gXX) a
    whole group of the class: sibling clips of one source video on both sides would score
    memorisation, as a random UCF101 re-split does. A class with one group falls back to
    videos."""
    labels = np.asarray(labels)
    units = np.arange(len(labels)) if groups is None else np.asarray(groups)
    rng = np.random.default_rng(seed)
    fit, val = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        names = np.unique(units[idx])
        if len(names) < 2:
            names, mine = idx, idx
        else:
            mine = units[idx]
        names = rng.permutation(names)
        n_val = min(max(int(round(frac * len(names))), 1), len(names) - 1) if len(names) > 1 else 0
        held = np.isin(mine, names[:n_val])
        val += idx[held].tolist()
        fit += idx[~held].tolist()
    return np.sort(fit), np.sort(val)


def _fit_bn_linear(x, y, c, hp, k):
    """CoCLR's probe; returns a scoring function (N, D) -> (N, C)."""
    g = torch.Generator().manual_seed(k["seed"])
    torch.manual_seed(k["seed"])  # the layer's initial weights
    net = nn.Sequential(nn.BatchNorm1d(x.shape[1]), nn.Linear(x.shape[1], c))
    opt = torch.optim.SGD(net.parameters(), lr=hp["lr"], momentum=k["momentum"],
                          weight_decay=hp["wd"])
    steps = [int(round(m * k["epochs"])) for m in k["milestones"]]
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, steps, 0.1)
    net.train()
    for _ in range(k["epochs"]):
        for b in torch.randperm(len(x), generator=g).split(k["batch_size"]):
            if len(b) < 2:  # BatchNorm cannot train on one sample
                continue
            loss = F.cross_entropy(net(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    net.eval()
    return lambda z: net(z).detach()


def _fit_lbfgs(x, y, c, hp, k, kind: str):
    """Logistic regression (mean CE + l2/2 |W|^2) or squared-hinge SVM (mean over samples
    and classes of max(0, 1 - t w.x)^2 + |W|^2 / (2 C N), liblinear's objective / N)."""
    mu, sd = x.mean(0), x.std(0).clamp(min=1e-6)  # statistics of the data being fitted only
    xs = torch.cat([(x - mu) / sd, torch.ones(len(x), 1)], 1)  # bias column, unpenalised
    w = torch.zeros(xs.shape[1], c, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=k["max_iter"], line_search_fn="strong_wolfe")
    t = 2 * F.one_hot(y, c).float() - 1

    def closure():
        opt.zero_grad()
        s, reg = xs @ w, w[:-1].pow(2).sum()
        if kind == "logreg":
            loss = F.cross_entropy(s, y) + 0.5 * hp["l2"] * reg
        else:
            loss = F.relu(1 - t * s).pow(2).sum(1).mean() + reg / (2 * hp["C"] * len(x))
        loss.backward()
        return loss
    opt.step(closure)
    w = w.detach()
    return lambda z: torch.cat([(z - mu) / sd, torch.ones(len(z), 1)], 1) @ w


def fit(kind: str, x, y, num_classes: int, hp: dict, knobs: dict):
    """Train classifier ``kind`` on (N, D) float ``x`` / (N,) long ``y``; returns a scorer."""
    if kind == "bn_linear":
        return _fit_bn_linear(x, y, num_classes, hp, knobs)
    if kind in ("logreg", "svm"):
        return _fit_lbfgs(x, y, num_classes, hp, knobs, kind)
    raise ValueError(f"unknown linear classifier {kind!r}; valid: {sorted(GRIDS)}")


def topk_accuracy(scores, labels, ks=(1, 5)) -> dict[int, float]:
    """{k: fraction whose label is among the top min(k, C) scores}; scores (N, C)."""
    scores, labels = torch.as_tensor(scores), torch.as_tensor(labels)
    top = scores.topk(min(max(ks), scores.shape[1]), dim=1).indices
    hit = top == labels[:, None]
    return {k: float(hit[:, :min(k, scores.shape[1])].any(1).float().mean()) for k in ks}


def select_hparams(kind: str, train_x, train_y, num_classes: int, knobs: dict, groups=None):
    """Best grid point by held-out top-1 on a stratified part of the TRAIN split.

    Args:
        kind: a key of ``GRIDS``. train_x: (N, D) float; train_y: (N,) long; the only data
            this function sees, so no test video can influence the choice.
        num_classes: C. knobs: ``DEFAULTS`` merged with the caller's.
        groups: (N,) source groups of the train videos, held out whole (or None).
    Returns:
        (hparams, {json(hparams): held-out top-1}); ties go to the earlier grid point.
    """
    fit_i, val_i = stratified_holdout(train_y.numpy(), knobs["holdout"], knobs["seed"], groups)
    scores = {}
    for hp in GRIDS[kind](knobs):
        f = fit(kind, train_x[fit_i], train_y[fit_i], num_classes, hp, knobs)
        scores[json.dumps(hp)] = topk_accuracy(f(train_x[val_i]), train_y[val_i], (1,))[1]
    best = max(scores, key=lambda s: scores[s])  # max() keeps the first of equal values
    return json.loads(best), scores


def train_groups(train: dict):
    """(N,) source groups of the train videos when every id is UCF101-layout (``gXX``),
    else None (videos are then held out one by one)."""
    from motionclr.datasets.sources.ucf101 import group_numbers
    ids = train.get("video_ids")
    return None if ids is None else group_numbers(ids)


def probe(train: dict, test: dict, num_classes: int, knobs: dict | None = None) -> dict:
    """Select on train, refit on all of train, score test once.

    Args:
        train, test: {"feats": (N, D), "labels": (N,) ints in [0, C)}; train's optional
            "video_ids" hold out whole UCF101 groups (``train_groups``).
        num_classes: C. knobs: overrides of ``DEFAULTS``.
    Returns:
        {classifier: {"top1", "top5", "hparams", "val_top1", "confusion" (C, C) int,
        rows = true class}}.
    """
    k = {**DEFAULTS, **(knobs or {})}

    def prep(d):
        x = torch.as_tensor(np.asarray(d["feats"]), dtype=torch.float32)
        return F.normalize(x, dim=1) if k["l2_normalize"] else x
    tr_x, te_x = prep(train), prep(test)
    tr_y = torch.as_tensor(np.asarray(train["labels"]), dtype=torch.long)
    te_y = torch.as_tensor(np.asarray(test["labels"]), dtype=torch.long)
    out, groups = {}, train_groups(train)
    for kind in k["classifiers"]:
        hp, val = select_hparams(kind, tr_x, tr_y, num_classes, k, groups)
        scores = fit(kind, tr_x, tr_y, num_classes, hp, k)(te_x)
        acc = topk_accuracy(scores, te_y, (1, 5))
        cm = np.zeros((num_classes, num_classes), dtype=np.int64)
        np.add.at(cm, (te_y.numpy(), scores.argmax(1).numpy()), 1)
        out[kind] = {"top1": acc[1], "top5": acc[5], "hparams": hp, "val_top1": val,
                     "confusion": cm}
    return out


def plot_confusion(cm, classes, path, title: str = "") -> Path:
    """Row-normalised confusion matrix (rows = true class) as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cm = np.asarray(cm, np.float64)
    norm = cm / cm.sum(1, keepdims=True).clip(min=1)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(2 + 0.25 * n, 2 + 0.25 * n))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if n <= 60:  # beyond that the names are unreadable anyway
        ax.set_xticks(range(n), classes, rotation=90, fontsize=6)
        ax.set_yticks(range(n), classes, fontsize=6)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def run_linear(run: str | Path, overrides: list[str] | None = None, device: str = "auto",
               knobs: dict | None = None, progress: bool = True) -> dict:
    """Probe ``<run>/checkpoint.pt``'s cached features; writes ``<run>/linear.json`` and a
    confusion-matrix PNG per classifier."""
    from motionclr.eval.features import protocol, run_features
    from motionclr.eval.retrieval_protocols import eval_subsets, resolve_knobs
    from motionclr.eval.tb import log_eval
    from motionclr.pipeline.cache import atomic_write_text
    from motionclr.storage.shards import load_manifest

    run = Path(run)
    rf = run_features(run, overrides, device, progress)
    cfg, meta, stage, tr, te = rf.cfg, rf.meta, rf.stage, rf.gallery, rf.query
    k = resolve_knobs(cfg, "linear", DEFAULTS, knobs)
    train, test = eval_subsets(cfg)
    classes = load_manifest(stage)["classes"]
    res = probe(tr, te, len(classes), k)
    for kind, r in res.items():
        png = plot_confusion(r.pop("confusion"), classes, run / f"linear_confusion_{kind}.png",
                             f"{cfg.data.dataset} {kind}: top-1 {100 * r['top1']:.1f}")
        r["confusion_png"] = png.name
    result = {"classifiers": res,
              "protocol": {**protocol(cfg), **k, "selection": f"stratified held-out "
                           f"{k['holdout']:.0%} of {train!r} (seed {k['seed']}; "
                           + ("whole source groups" if train_groups(tr) is not None
                              else "videos") + f"), never {test!r}",
                           "refit": f"whole {train!r} subset", "train_subset": train,
                           "test_subset": test, "bn_linear_schedule":
                           "SGD, LR x0.1 at each milestone (fraction of epochs)",
                           "n_train": int(len(tr["labels"])), "n_test": int(len(te["labels"]))},
              "dataset": cfg.data.dataset, "method": cfg.method.name,
              "backbone": cfg.model.backbone, "epochs": meta["epochs"], "stage": str(stage)}
    atomic_write_text(run / "linear.json", json.dumps(result, indent=1))
    log_eval(run, cfg, meta, "linear", {f"{kind}/{m}": r[m] for kind, r in res.items()
                                        for m in ("top1", "top5")})
    if progress:
        for kind, r in res.items():
            print(f"linear {kind}: top-1 {100 * r['top1']:.1f} top-5 {100 * r['top5']:.1f} "
                  f"({r['hparams']})")
    return result
