"""Retrieval protocol presets, protocol-knob resolution, and the retrieval example figure.

``retrieval_protocol("vcop")`` vs ``("coclr")`` gives the settings that differ between the
codebases (eval.md B.1) as config overrides for ``motionclr eval retrieval``.
``retrieval_figure`` draws a few test queries next to their top-k train neighbours.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

# What our extractor reproduces of each codebase (eval.md B.1); what it cannot is recorded
# under ``differs_from_original``. The feature knobs are ``EvalCfg`` fields (features.py).
FEATURE_KNOBS = ("num_clips", "crops", "dense", "clip_l2", "layer")
RETRIEVAL_PROTOCOLS = {
    "coclr": {"num_clips": 10, "crops": 1, "dense": True, "clip_l2": True,
              "layer": "backbone_pool", "center": True, "similarity": "cosine",
              "differs_from_original": [
                  "window length and input size are the run's clip.clip_len / clip.crop "
                  "(CoCLR: 32 frames, 128 px)",
                  "centre crop is the short side's square (CoCLR: 224 of 256, resized)",
                  "every video kept; a video shorter than a window repeats its last frame "
                  "(CoCLR left-pads, drops videos under ~17 frames, and jitters colour)"]},
    "vcop": {"num_clips": 10, "crops": 1, "dense": False, "clip_l2": False,
             "layer": "backbone_pool", "center": False, "similarity": "cosine",
             "differs_from_original": ["pooled backbone output, not the flattened conv5 map",
                                       "every video kept (VCOP's drop_last loses up to 7)"]},
}


def retrieval_protocol(name: str = "coclr") -> dict:
    """Settings of a named retrieval protocol (``coclr`` = also MSCL; ``vcop`` = also IIC)."""
    if name not in RETRIEVAL_PROTOCOLS:
        raise ValueError(f"unknown retrieval protocol {name!r}; "
                         f"valid: {sorted(RETRIEVAL_PROTOCOLS)}")
    return {"name": name, **RETRIEVAL_PROTOCOLS[name]}


def _fmt(v) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def protocol_overrides(name: str = "coclr") -> list[str]:
    """The protocol as dotted overrides, e.g. ``["eval.num_clips=10", "eval.center=false"]``,
    then the feature knobs whose value differs from the ``EvalCfg`` default (e.g.
    ``eval.dense=true``). Overrides apply on top of the run's config, so a run saved with a
    non-default feature knob keeps it unless the override names it."""
    from motionclr.config import EvalCfg
    p, default = retrieval_protocol(name), EvalCfg()
    out = [f"eval.num_clips={p['num_clips']}", f"eval.center={_fmt(p['center'])}"]
    return out + [f"eval.{k}={_fmt(p[k])}" for k in FEATURE_KNOBS[1:]
                  if p[k] != getattr(default, k)]


def eval_subsets(cfg) -> tuple[str, str]:
    """(train, test) subsets: ``eval.gallery`` is the labelled set classifiers learn from and
    ``eval.query`` the one they are scored on (K400/SSv2: ``val``)."""
    return getattr(cfg.eval, "gallery", "train"), getattr(cfg.eval, "query", "test")


def check_labelled(labels, subset: str) -> None:
    if (np.asarray(labels) < 0).any():
        raise ValueError(f"the {subset!r} subset has unlabelled videos; choose a labelled one "
                         "with eval.query=val")


def _coerce(value, like, key: str):
    """``value`` as the type of its default ``like``: overrides arrive through YAML, where
    ``1e-3`` (no dot) is a string, and dict-valued config fields are not type-checked."""
    if isinstance(like, bool):
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        if isinstance(value, bool):
            return value
    elif isinstance(like, (int, float)) and not isinstance(value, bool):
        try:
            v = float(value)
            if isinstance(like, float):
                return v
            if v == int(v):
                return int(v)
        except (TypeError, ValueError, OverflowError):
            pass
    elif isinstance(like, list):
        value = [value] if isinstance(value, (str, int, float)) else value
        if isinstance(value, (list, tuple)):
            return [_coerce(v, like[0], key) if like else v for v in value]
    elif like is None or isinstance(like, str):
        return value
    raise ValueError(f"eval knob {key}: expected {type(like).__name__}, got {value!r}")


def resolve_knobs(cfg, section: str, defaults: dict, extra: dict | None = None,
                  only_given: bool = False) -> dict:
    """Protocol knobs: ``defaults`` <- ``cfg.eval.<section>`` (a dict, if the config has that
    field) <- ``extra``. Unknown keys fail at once with the valid ones, like the config;
    values take their default's type. ``only_given``: return just the keys that were set."""
    given = {}
    for src in (getattr(getattr(cfg, "eval", None), section, None) or {}, extra or {}):
        unknown = sorted(set(src) - set(defaults))
        if unknown:
            raise KeyError(f"unknown eval.{section} knob(s) {unknown}; valid: {sorted(defaults)}")
        given.update({k: _coerce(v, defaults[k], f"{section}.{k}") for k, v in src.items()})
    return given if only_given else {**defaults, **given}


def neighbours(query_feats, gallery_feats, k: int = 5, center: bool = True):
    """Top-k gallery indices (Q, k) and their cosine similarities (Q, k), the geometry of
    ``retrieval.recall_at_k`` (per-set centring, L2, dot product; stable ties)."""
    q = np.asarray(query_feats, np.float64)
    g = np.asarray(gallery_feats, np.float64)
    if center:
        q, g = q - q.mean(0, keepdims=True), g - g.mean(0, keepdims=True)
    q /= np.linalg.norm(q, axis=1, keepdims=True).clip(min=1e-12)
    g /= np.linalg.norm(g, axis=1, keepdims=True).clip(min=1e-12)
    sim = q @ g.T
    idx = np.argsort(-sim, axis=1, kind="stable")[:, :min(k, g.shape[0])]
    return idx, np.take_along_axis(sim, idx, axis=1)


def draw_retrieval(query_frames, neighbour_frames, correct, query_titles, neighbour_titles,
                   path: str | Path) -> Path:
    """Grid figure: row i = query frame, then its neighbours framed green (same class) or red.

    Args:
        query_frames: Q uint8 (H, W, 3). neighbour_frames: Q lists of k uint8 frames.
        correct: (Q, k) bools. query_titles / neighbour_titles: str, (Q,) and (Q, k).
    """
    import matplotlib
    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt
    nq, k = len(query_frames), len(neighbour_frames[0])
    fig, axes = plt.subplots(nq, k + 1, figsize=(1.9 * (k + 1), 2.0 * nq), squeeze=False)
    for i in range(nq):
        cells = [(query_frames[i], query_titles[i], "black")] + [
            (neighbour_frames[i][j], neighbour_titles[i][j],
             "tab:green" if correct[i][j] else "tab:red") for j in range(k)]
        for j, (img, title, colour) in enumerate(cells):
            ax = axes[i, j]
            ax.imshow(img)
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_edgecolor(colour)
                s.set_linewidth(1 if j == 0 else 4)
            mark = "" if j == 0 else (" \u2713" if correct[i][j - 1] else " \u2717")
            ax.set_title(("query: " if j == 0 else f"#{j}: ") + title + mark, fontsize=7,
                         color=colour)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def retrieval_figure(run: str | Path, overrides: list[str] | None = None, device: str = "auto",
                     n_queries: int = 4, k: int = 5, progress: bool = False) -> Path:
    """``<run>/retrieval_examples.png``: ``n_queries`` test videos (evenly spread over the
    test list, deterministic) and their top-``k`` train neighbours, middle frames."""
    from motionclr.eval.features import run_features
    from motionclr.storage.shards import load_manifest, read_video

    run = Path(run)
    rf = run_features(run, overrides, device, progress)
    cfg, stage, gal, qry = rf.cfg, rf.stage, rf.gallery, rf.query
    classes = load_manifest(stage)["classes"]
    nq = min(n_queries, len(qry["labels"]))
    qi = np.linspace(0, len(qry["labels"]) - 1, nq).round().astype(int)
    idx, _ = neighbours(qry["feats"][qi], gal["feats"], k, cfg.eval.center)

    def middle(video_id):
        rgb = read_video(stage, str(video_id))[0]
        return rgb[len(rgb) // 2]

    correct = gal["labels"][idx] == qry["labels"][qi][:, None]
    return draw_retrieval(
        [middle(qry["video_ids"][i]) for i in qi],
        [[middle(gal["video_ids"][j]) for j in row] for row in idx], correct,
        [classes[int(qry["labels"][i])] for i in qi],
        [[classes[int(gal["labels"][j])] for j in row] for row in idx],
        run / "retrieval_examples.png")
