"""Retrieval with a two-stream method's *flow* pathway: does the motion teacher know motion?

MoDist and MSCL train a flow encoder beside the RGB one and keep only the RGB one. When
their RGB retrieval stays low, the first question is whether the flow pathway separated
the motions at all (then the transfer to RGB is what failed) or not (then nothing could be
distilled). ``flow_pathway_recall`` answers it for a finished run: the same protocol as RGB
retrieval (test videos query the train gallery, ``eval.num_clips`` uniform clips per video,
centre crop ``clip.crop``, features averaged over clips, centred, cosine, R@1), on the flow
encoder's pooled features of the clips' flow, prepared as in training (dequantised, divided
by ``flow_scale``, then the method's ``prepare_flow``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


@torch.no_grad()
def _flow_features(model, stage, subset: str, cfg, device) -> tuple[np.ndarray, np.ndarray]:
    from motionclr.datasets.shard_dataset import ShardClipDataset
    from motionclr.datasets.transforms import to_float
    from motionclr.eval.views import clip_sampler
    c = cfg.clip
    ds = ShardClipDataset(stage, subset, cfg.data.split, train=False, window=0,
                          sampler=clip_sampler(cfg.eval.num_clips, c.clip_len, c.stride),
                          modalities=("flow",))
    scale = float(model.eval_augment.cfg.flow_scale)
    feats, labels = [], []
    for i in range(len(ds)):
        s = ds[i]  # flow (V, T, H, W, 2) uint8
        flow = torch.from_numpy(s["flow"]).to(device).permute(0, 4, 1, 2, 3)
        flow = to_float({"flow": flow}, cfg.flow.bound)["flow"] / scale
        h, w = flow.shape[-2:]
        y, x = (h - min(c.crop, h)) // 2, (w - min(c.crop, w)) // 2
        flow = flow[..., y:y + c.crop, x:x + c.crop]
        out = model.flow_encoder(model.prepare_flow(flow)).pooled.float().mean(0)
        feats.append(out.cpu().numpy())
        labels.append(int(s["label"]))
    return np.stack(feats), np.asarray(labels)


def flow_pathway_recall(run: str | Path, class_names=None, device: str = "cpu") -> dict | None:
    """``{"r1": float, "per_class_r1": {name: float}}`` of the run's flow encoder, or None
    when the method has none."""
    from motionclr.eval.checkpoint import load_run
    from motionclr.eval.retrieval_protocols import neighbours
    cfg, model, meta = load_run(run, device=device)
    if not hasattr(model, "flow_encoder"):
        return None
    g, g_lab = _flow_features(model, meta["stage"], "train", cfg, meta["device"])
    q, q_lab = _flow_features(model, meta["stage"], "test", cfg, meta["device"])
    order, _ = neighbours(q, g, k=1, center=cfg.eval.center)
    hit = g_lab[order[:, 0]] == q_lab
    names = class_names or [str(c) for c in range(int(max(q_lab.max(), g_lab.max())) + 1)]
    return {"r1": float(hit.mean()),
            "per_class_r1": {names[c]: float(hit[q_lab == c].mean())
                             for c in sorted(set(q_lab.tolist()))}}
