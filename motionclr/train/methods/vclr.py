"""VCLR on clips: SeCo inter/intra terms, video-level segment consensus and 4-way order.

Kuang et al., "Video Contrastive Learning with Global Context", https://arxiv.org/abs/2108.02722.
The released code is a 2D ResNet-50 on single frames (built on SeCo); this class applies the
same four terms to clips of a 3D backbone (``params.frames: true`` gives the frame form: one-
frame clips, and ``embed`` averages per-frame features as VCLR's retrieval). All weights 1,
tau = 0.1 (docs/methods.md, VCLR).

Per video the sampler (``SegmentClips``, 3 segments x 2 clips) gives a query set (one clip
per segment) and a key set (other clips of the same segments). SeCo part: the anchor is the
query-set clip of the first or the last segment (random per sample); its keys are the anchor
re-augmented and the two other query-set clips (momentum encoder).

``cfg.method.params`` (``VCLRParams``, all optional):
    frames: one-frame clips (False).
    segment_queue_size: size of the segment queue (``queue_size``).
    order_normalize: ``OrderHead`` normalisation, "item" (default) or "frame" (VCLR code).
    weights: {inter, intra, segment, order} (all 1); 0 drops a term (e.g. SeCo = the first
        two only).
    motion_crop: MCL's motion-focused crop on every clip (False); reads flow for the map
        when the batch has no ``motion_map``.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor

from motionclr.datasets.samplers import SegmentClips
from motionclr.train.heads import OrderHead, ProjectionMLP, init_momentum_copy
from motionclr.train.losses import (intra_nce, multi_positive_nce, order_loss,
                                    permute_segments, sample_order_targets, segment_nce)
from motionclr.train.methods.base import BaseMethod, cpu_generator
from motionclr.train.methods.mcl import augment_views, motion_augment
from motionclr.train.methods.params import VCLRParams

TERMS = ("inter", "intra", "segment", "order")


class VCLR(BaseMethod):
    """VCLR (arXiv 2108.02722): inter + intra + segment + order on 3 segments."""

    name = "vclr"
    modalities: tuple[str, ...] = ("rgb",)
    num_segments = 3

    Params = VCLRParams

    @classmethod
    def check(cls, cfg, params) -> None:
        unknown = set(params.weights) - set(TERMS)
        if unknown:
            raise ValueError(f"unknown VCLR weights {sorted(unknown)}; valid: {TERMS}")

    def __init__(self, cfg):
        super().__init__(cfg)
        p, dim, c = self.params, cfg.model.dim, self.backbone.out_dim
        self.check(cfg, p)
        self.frames = p.frames
        # projector (base) = fc_inter; the other three heads as in VCLR's resnet_mlp
        for head in ("fc_intra", "fc_order", "fc_tsn"):
            setattr(self, head, ProjectionMLP(in_dim=c, out_dim=dim))
            setattr(self, f"momentum_{head}", copy.deepcopy(getattr(self, head)))
            init_momentum_copy(getattr(self, head), getattr(self, f"momentum_{head}"))
        self.order_head = OrderHead(embed_dim=dim, num_items=2 * self.num_segments,
                                    num_classes=4, normalize=p.order_normalize)
        self.make_queue("queue", dim, cfg.method.queue_size)
        self.make_queue("segment_queue", dim, p.segment_queue_size or cfg.method.queue_size)
        self.weights = {t: float(p.weights.get(t, 1.0)) for t in TERMS}
        if p.motion_crop:
            self.augment = motion_augment(cfg)
            self.modalities = ("rgb", "flow")  # the crop's map comes from flow without index

    def sampler(self):
        c = self.cfg.clip
        return SegmentClips(self.num_segments, clip_len=1 if self.frames else c.clip_len,
                            stride=c.stride, per_segment=2)

    @property
    def momentum_pairs(self):
        return super().momentum_pairs + [(getattr(self, h), getattr(self, f"momentum_{h}"))
                                         for h in ("fc_intra", "fc_order", "fc_tsn")]

    @torch.no_grad()
    def embed(self, rgb: Tensor) -> Tensor:
        """Frame form: the mean of per-frame features (VCLR averages frames); else clips."""
        if not self.frames:
            return self.backbone(rgb)
        n, c, t, h, w = rgb.shape
        frames = rgb.transpose(1, 2).reshape(n * t, c, 1, h, w)
        return self.backbone(frames).view(n, t, -1).mean(dim=1)

    @staticmethod
    def encode(backbone, x: Tensor) -> Tensor:
        """(N, V, 3, T, H, W) -> pooled features (N, V, C), each clip encoded alone."""
        return backbone(x.flatten(0, 1)).view(x.shape[0], x.shape[1], -1)

    def training_step(self, batch: dict, generator=None) -> tuple[Tensor, dict]:
        s = self.num_segments
        n, dev = batch["rgb"].shape[0], batch["rgb"].device
        gen = cpu_generator(generator)
        rows = torch.arange(n, device=dev)
        anchor = (torch.randint(0, 2, (n,), generator=gen) * (s - 1)).to(dev)  # first|last
        others = torch.stack([(anchor + 1) % s, (anchor + 2) % s], dim=1)  # (N, 2)
        # views 0..S-1: query set, S..2S-1: key set, 2S: the anchor re-augmented
        ext = {k: torch.cat([batch[k][:, :2 * s], batch[k][rows, anchor][:, None]], dim=1)
               for k in (*self.modalities, "motion_map") if k in batch}
        x = torch.stack([v["rgb"] for v in augment_views(self, ext, range(2 * s + 1),
                                                         generator)], dim=1)
        h_q = self.encode(self.backbone, x[:, :s])  # (N, S, C) online, query set
        with torch.no_grad():
            keys = torch.cat([x[:, 2 * s:], x[rows[:, None], others], x[:, s:2 * s]], dim=1)
            h_k = self.encode(lambda z: self.key_forward(self.momentum_backbone, z),
                              keys)  # (N, 3 + S, C)
            k_inter = F.normalize(self.momentum_projector(h_k[:, :3]), dim=-1)  # (N, 3, D)
            k_intra = F.normalize(self.momentum_fc_intra(h_k[:, :3]), dim=-1)
            k_seg = F.normalize(self.momentum_fc_tsn(h_k[:, 3:].mean(dim=1)), dim=-1)
            o_k = self.momentum_fc_order(h_k[:, 3:])  # (N, S, D), the key set
        h_a = h_q[rows, anchor]  # (N, C) the anchor's online feature
        tau, w, terms = self.cfg.method.temperature, self.weights, {}
        if w["inter"]:
            q = F.normalize(self.projector(h_a), dim=-1)
            terms["loss_inter"] = w["inter"] * multi_positive_nce(
                q, k_inter, self.queue.clone(), tau, queue_mask=self.queue_mask("queue"))
        if w["intra"]:
            q_intra = F.normalize(self.fc_intra(h_a), dim=-1)
            terms["loss_intra"] = w["intra"] * intra_nce(q_intra, k_intra[:, 0],
                                                         k_intra[:, 1:], tau)
        if w["segment"]:
            # the key is already the projected consensus: a one-item set is its own mean
            terms["loss_segment"] = w["segment"] * segment_nce(
                h_q, k_seg[:, None], self.segment_queue.clone(), tau, project_q=self.fc_tsn,
                queue_mask=self.queue_mask("segment_queue"))
        logs = {}
        if w["order"]:
            perm_q, perm_k, label = sample_order_targets(n, s, generator=gen, device=dev)
            items = torch.cat([permute_segments(self.fc_order(h_q), perm_q),
                               permute_segments(o_k, perm_k)], dim=1)  # (N, 2S, D)
            logits = self.order_head(items)
            terms["loss_order"] = w["order"] * order_loss(logits, label)
            logs["order_acc"] = (logits.argmax(1) == label).float().mean().detach()
        loss = self.total(terms)
        self.enqueue("queue", k_inter.reshape(-1, k_inter.shape[-1]))  # all 3 keys (SeCo)
        self.enqueue("segment_queue", k_seg)
        return loss, {"loss": loss.detach(), **{k: v.detach() for k, v in terms.items()},
                      **logs}
