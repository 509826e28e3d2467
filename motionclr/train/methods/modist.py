"""MoDist (= MaCLR): an RGB pathway and a flow pathway tied by cross-modal InfoNCE.

Xiao, Tighe, Modolo, "MoDist: Motion Distillation for Self-supervised Video Representation
Learning" / "MaCLR", https://arxiv.org/abs/2106.09703. No pretraining code is public; the
loss follows MSCL's "Reimplemented MoDist" (docs/methods.md): RGB-RGB + flow-flow InfoNCE
plus RGB->flow and flow->RGB terms whose negatives come from the key modality's queue. The
flow pathway is discarded after pretraining; ``embed`` is the RGB backbone only.

``cfg.method.params`` (``MoDistParams``, all optional):
    flow_encoder: name in ``FLOW_ENCODERS`` ("r2d18_slim").
    flow_encoder_args: dict of keyword arguments for it (e.g. ``{"widths": [8, 16]}``).
    flow_norm: "max" divides each flow frame by its largest vector (MSCL's pipeline),
        "none" keeps pixels (divided by the augmentation's ``flow_scale``).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor

from motionclr.datasets.transforms import max_magnitude_normalize
from motionclr.train.flow_encoders import FlowFeatures, build_flow_encoder
from motionclr.train.heads import ProjectionMLP, init_momentum_copy
from motionclr.train.losses import modist_terms
from motionclr.train.methods.base import BaseMethod
from motionclr.train.methods.params import MoDistParams

FLOW_NORMS = ("max", "none")


class MoDist(BaseMethod):
    """MoDist/MaCLR (arXiv 2106.09703): RGB + flow MoCo with cross-modal terms."""

    name = "modist"
    modalities = ("rgb", "flow")

    Params = MoDistParams

    def __init__(self, cfg):
        super().__init__(cfg)
        p, dim = self.params, cfg.model.dim
        self.flow_norm = p.flow_norm
        args = {k: tuple(v) if isinstance(v, list) else v
                for k, v in p.flow_encoder_args.items()}
        self.flow_encoder = build_flow_encoder(p.flow_encoder, **args)
        # MSCL: 128-d pooled -> MLP 128 -> 128 -> dim; dim must equal the RGB side's for
        # the cross-modal dot products.
        self.flow_projector = ProjectionMLP(in_dim=self.flow_encoder.out_dim, out_dim=dim)
        self.momentum_flow_encoder = copy.deepcopy(self.flow_encoder)
        self.momentum_flow_projector = copy.deepcopy(self.flow_projector)
        init_momentum_copy(self.flow_encoder, self.momentum_flow_encoder)
        init_momentum_copy(self.flow_projector, self.momentum_flow_projector)
        self.make_queue("rgb_queue", dim, cfg.method.queue_size)
        self.make_queue("flow_queue", dim, cfg.method.queue_size)

    @property
    def momentum_pairs(self):
        return super().momentum_pairs + [
            (self.flow_encoder, self.momentum_flow_encoder),
            (self.flow_projector, self.momentum_flow_projector)]

    # ---- flow pathway ---------------------------------------------------------------
    def prepare_flow(self, flow: Tensor) -> Tensor:
        """Augmented float flow (N, 2, T, H, W) -> encoder input (per-frame max norm)."""
        return max_magnitude_normalize(flow) if self.flow_norm == "max" else flow

    def encode_flow_q(self, flow: Tensor) -> tuple[Tensor, FlowFeatures]:
        """(N, 2, T, H, W) -> (L2-normalised embedding (N, dim), encoder outputs)."""
        out = self.flow_encoder(flow)
        return F.normalize(self.flow_projector(out.pooled), dim=1), out

    @torch.no_grad()
    def encode_flow_k(self, flow: Tensor) -> Tensor:
        return self.key_forward(lambda x: F.normalize(
            self.momentum_flow_projector(self.momentum_flow_encoder(x).pooled), dim=1), flow)

    def encode_rgb_q(self, rgb: Tensor) -> tuple[Tensor, Tensor]:
        """(N, 3, T, H, W) -> (embedding (N, dim), last conv map (N, C, T', H', W')).

        One backbone pass serves both the clip embedding and the map that per-step terms
        (MSCL's LMCL) need; the backbone's pooled output is the mean of this map."""
        fmap = self.backbone.features(rgb)
        return F.normalize(self.projector(fmap.mean(dim=(2, 3, 4))), dim=1), fmap

    # ---- step -----------------------------------------------------------------------
    def embed_views(self, v1: dict, v2: dict, generator=None) -> dict:
        """Online embeddings of view 1, momentum embeddings of view 2.

        Returns ``rgb_q, rgb_k, flow_q, flow_k`` (N, dim), ``rgb_map`` and ``flow_q_out``.
        """
        emb = {}
        emb["rgb_q"], emb["rgb_map"] = self.encode_rgb_q(v1["rgb"])
        emb["rgb_k"] = self.encode_k(v2["rgb"])
        emb["flow_q"], emb["flow_q_out"] = self.encode_flow_q(self.prepare_flow(v1["flow"]))
        emb["flow_k"] = self.encode_flow_k(self.prepare_flow(v2["flow"]))
        return emb

    def loss_terms(self, emb: dict) -> dict[str, Tensor]:
        """The four MoDist terms (scalars, weight 1 each)."""
        return modist_terms(rgb_q=emb["rgb_q"], rgb_k=emb["rgb_k"], flow_q=emb["flow_q"],
                            flow_k=emb["flow_k"], rgb_queue=self.rgb_queue.clone(),
                            flow_queue=self.flow_queue.clone(),
                            temperature=self.cfg.method.temperature,
                            rgb_queue_mask=self.queue_mask("rgb_queue"),
                            flow_queue_mask=self.queue_mask("flow_queue"))

    def training_step(self, batch: dict, generator=None) -> tuple[Tensor, dict]:
        v1, v2 = self.views(batch, generator)[:2]
        emb = self.embed_views(v1, v2, generator)
        terms = self.loss_terms(emb)
        loss = self.total(terms)
        # enqueue after the loss: the current keys must not be their own negatives
        self.enqueue("rgb_queue", emb["rgb_k"])
        self.enqueue("flow_queue", emb["flow_k"])
        return loss, {"loss": loss.detach(), **{k: v.detach() for k, v in terms.items()}}
