"""Retrieval with a two-stream method's *flow* pathway: does the motion teacher know motion?

MoDist and MSCL train a flow encoder beside the RGB one and keep only the RGB one. When
their RGB retrieval stays low, the first question is whether the flow pathway separated
the motions at all (then the transfer to RGB is what failed) or not (then nothing could be
distilled). ``flow_pathway_recall`` answers it for a finished run: the same protocol as RGB
retrieval (test videos query the train gallery, ``eval.num_clips`` uniform clips per video,
centre crop ``clip.crop``, features averaged over clips, centred, cosine, R@1), on the flow
encoder's pooled features of the clips' flow, prepared as in training (dequantised, divided
by ``flow_scale``, then the method's ``prepare_flow``).

When the flow pathway does know motion, ``cross_modal_alignment`` asks whether the RGB
embedding matches its clip's flow by the motion or only by the moving region: it compares
each clip's own flow with the same flow reversed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def _test_clips(model, stage, subset: str, cfg, device, modalities):
    """Per video: ``eval.num_clips`` uniform clips as float tensors ``(V, C, T, S, S)`` (the
    centre ``clip.crop`` square; RGB in [0, 1], normalised as trained; flow dequantised
    and divided by ``flow_scale``, not yet ``prepare_flow``-ed) and the label."""
    from motionclr.datasets.shard_dataset import ShardClipDataset
    from motionclr.datasets.transforms import normalize, to_float
    from motionclr.eval.views import clip_sampler
    c, aug = cfg.clip, model.eval_augment.cfg
    ds = ShardClipDataset(stage, subset, cfg.data.split, train=False, window=0,
                          sampler=clip_sampler(cfg.eval.num_clips, c.clip_len, c.stride),
                          modalities=modalities)
    for i in range(len(ds)):
        s = ds[i]  # (V, T, H, W, C) uint8
        x = {m: torch.from_numpy(s[m]).to(device).permute(0, 4, 1, 2, 3) for m in modalities}
        x = normalize(to_float(x, cfg.flow.bound), aug.mean, aug.std, float(aug.flow_scale))
        h, w = x[modalities[0]].shape[-2:]
        y, z = (h - min(c.crop, h)) // 2, (w - min(c.crop, w)) // 2
        yield {m: v[..., y:y + c.crop, z:z + c.crop] for m, v in x.items()}, int(s["label"])


@torch.no_grad()
def _flow_features(model, stage, subset: str, cfg, device) -> tuple[np.ndarray, np.ndarray]:
    feats, labels = [], []
    for x, label in _test_clips(model, stage, subset, cfg, device, ("flow",)):
        out = model.flow_encoder(model.prepare_flow(x["flow"])).pooled.float().mean(0)
        feats.append(out.cpu().numpy())
        labels.append(label)
    return np.stack(feats), np.asarray(labels)


@torch.no_grad()
def cross_modal_alignment(run: str | Path, device: str = "cpu") -> dict | None:
    """How a two-stream run's RGB embedding matches the flow embedding of its own clip, on
    the test clips in eval mode: ``cos_own`` (mean cosine of the online RGB and flow
    embeddings), ``cos_reversed`` (the same with every flow vector turned by 180°: the same
    moving region and speed, the opposite motion) and ``own_beats_reversed`` (fraction of
    clips whose own flow is closer). A cross-modal term solved through *where* the object
    is rather than *how* it moves gives ``own_beats_reversed`` near 0.5. None for methods
    without both embeddings."""
    from motionclr.eval.checkpoint import load_run
    cfg, model, meta = load_run(run, device=device)
    if not (hasattr(model, "encode_rgb_q") and hasattr(model, "encode_flow_q")):
        return None
    own, rev = [], []  # load_run returns the model in eval mode
    for x, _ in _test_clips(model, meta["stage"], "test", cfg, meta["device"], ("rgb", "flow")):
        q = model.encode_rgb_q(x["rgb"])[0]
        for out, f in ((own, x["flow"]), (rev, -x["flow"])):
            out.append((q * model.encode_flow_q(model.prepare_flow(f))[0]).sum(1).float().cpu())
    own, rev = torch.cat(own), torch.cat(rev)
    return {"cos_own": float(own.mean()), "cos_reversed": float(rev.mean()),
            "own_beats_reversed": float((own > rev).float().mean()), "n_clips": len(own)}


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
